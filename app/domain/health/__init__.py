"""The state of every mipo service as the manager can see it."""
