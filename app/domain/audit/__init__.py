"""The hash-chained audit log of every change."""
