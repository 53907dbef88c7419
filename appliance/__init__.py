"""The operator side: the `mipo` CLI, the Debian 13 image and the local lab."""
