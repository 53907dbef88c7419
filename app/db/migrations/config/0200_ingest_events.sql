-- Ingest emits events (scanner enrolled, job refused as out of scope); emit() uses INSERT … RETURNING id,
-- which needs SELECT on the returned column. Nothing else of the table becomes readable to ingest.
GRANT SELECT (id) ON events TO mipo_ingest;
