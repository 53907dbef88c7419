"""Domain packages (schemas, service, repository) shared by every role."""
