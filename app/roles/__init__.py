"""One package per role; each lists exactly its routes or its loop."""
