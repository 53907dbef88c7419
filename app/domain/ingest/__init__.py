"""Result ingest: batch decoding, certificate parsing, the ledger + COPY write path, coverage."""
