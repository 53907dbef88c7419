"""The three databases: connection settings, pools and migrations."""
