"""Scan runs: "run now" requests, progress, and finalisation when every job is terminal."""
