"""The dashboard's summary: scanners, running scans, recent changes and events."""
