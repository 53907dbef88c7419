"""The mipo scanner agent: standard library only (Python >= 3.11), shipped as one zipapp."""

# Relative imports only inside this package: it runs both as `app.scanner` and, zipped, as `mipo_scanner`.
VERSION = "0.1.0"
