"""TCP port specifications: parsing, the built-in catalog, compact formatting."""
