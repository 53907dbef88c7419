"""People who log in to the manager, their roles and passwords."""
