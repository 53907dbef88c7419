"""Results history: coverage semantics, port state changes, cross-vantage, point-in-time, retention, exports."""
