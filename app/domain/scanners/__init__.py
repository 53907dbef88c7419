"""Scanners: enrolment tokens, API keys, heartbeats and online status."""
