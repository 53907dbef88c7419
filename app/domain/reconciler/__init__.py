"""The reconciler: every non-terminal job state has a timeout, and every stall and recovery is an event."""
