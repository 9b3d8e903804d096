-- The resources a user touched for the first time this week: first seen on
-- or after the week's start, never seen in the lake before it.
-- Params: {{tenant_id}}, {{user_id}}, {{week_start}} and {{week_end}}
-- ('YYYY-MM-DD'; start inclusive, end exclusive, normally start + 7 days).
SELECT resource,
       min(time) AS first_seen,
       count(*) AS calls,
       count(DISTINCT session_id) AS sessions
FROM events
WHERE dt < '{{week_end}}'
  AND tenant_id = '{{tenant_id}}'
  AND user_id = '{{user_id}}'
  AND resource IS NOT NULL
GROUP BY resource
HAVING min(dt) >= '{{week_start}}'
ORDER BY first_seen, resource
