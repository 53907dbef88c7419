"""mipo: the runtime package installed on every mipo host (never imports pyinfra)."""

__version__ = "0.1.0"
