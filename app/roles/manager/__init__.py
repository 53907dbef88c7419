"""The manager role."""
