-- Denials by user in a time range: who in the tenant was refused (decision
-- 'deny' or HTTP 403), how often, on how many tools, when first and last.
-- Params: {{tenant_id}}, {{from}} and {{to}} (RFC 3339 UTC, e.g.
-- '2026-10-12T00:00:00Z'; from inclusive, to exclusive), {{from_day}} and
-- {{to_day}} (their UTC days, 'YYYY-MM-DD'). The day bounds only prune
-- partitions; the time bounds decide. (The days are parameters, not
-- substr('{{from}}', 1, 10): DuckDB with its default hive type detection
-- reads dt as DATE and refuses to compare it with a computed string.)
SELECT user_id,
       count(*) AS denials,
       count(DISTINCT tool) AS tools,
       count(DISTINCT server) AS servers,
       min(time) AS first_denial,
       max(time) AS last_denial
FROM events
WHERE dt >= '{{from_day}}'
  AND dt <= '{{to_day}}'
  AND time >= '{{from}}'
  AND time < '{{to}}'
  AND tenant_id = '{{tenant_id}}'
  AND (decision = 'deny' OR status = 403)
GROUP BY user_id
ORDER BY denials DESC, user_id
