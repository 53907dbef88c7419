"""Encrypted, signed backups of the three databases: dump, verify, restore, retention, freshness."""
