"""The backup role."""
