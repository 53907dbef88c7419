"""Schedules: 5-field cron with presets in an IANA time zone, jitter, and their persistence."""
