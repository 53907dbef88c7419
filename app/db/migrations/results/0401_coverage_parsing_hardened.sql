-- coverage_rectangles: port items must be 1-5 digits with first <= last, checked before any cast, so one odd
-- item in a job's coverage is ignored (covers nothing) instead of failing the whole run's change detection.
CREATE OR REPLACE FUNCTION coverage_rectangles(p_run_id bigint)
RETURNS TABLE (job_id bigint, scanner_id bigint, complete boolean, finished_at timestamptz,
               ips inetrange, ports int4range)
LANGUAGE sql STABLE AS $$
    SELECT c.job_id, c.scanner_id, c.complete, c.finished_at,
           CASE jsonb_typeof(t.elem)
               WHEN 'array' THEN inetrange(host((t.elem->>0)::inet)::inet, host((t.elem->>1)::inet)::inet, '[]')
               ELSE inetrange(host(network((t.elem#>>'{}')::inet))::inet,
                              host(broadcast((t.elem#>>'{}')::inet))::inet, '[]')
           END,
           int4range(p.lo, p.hi, '[]')
    FROM run_coverage c
    CROSS JOIN LATERAL jsonb_array_elements(c.targets) AS t(elem)
    CROSS JOIN LATERAL (
        -- CASE, not WHERE: quals may run in any order, a cast before the pattern check would raise.
        SELECT CASE WHEN i.ok THEN split_part(i.item, '-', 1)::int END AS lo,
               CASE WHEN i.ok THEN coalesce(nullif(split_part(i.item, '-', 2), ''),
                                            split_part(i.item, '-', 1))::int END AS hi
        FROM (SELECT item, item ~ '^[0-9]{1,5}(-[0-9]{1,5})?$' AS ok
              FROM (SELECT regexp_replace(btrim(x), '/tcp$', '') AS item
                    FROM string_to_table(c.ports, ',') AS x) raw) i
    ) p
    WHERE c.run_id = p_run_id AND p.lo IS NOT NULL AND p.lo <= p.hi
$$;
