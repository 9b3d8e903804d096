-- The ten most called tools of each tenant in a week, with how many users
-- called each and how many of those calls were denied.
-- Params: {{week_start}} and {{week_end}} ('YYYY-MM-DD'; end exclusive).
WITH counts AS (
    SELECT tenant_id, server, tool,
           count(*) AS calls,
           count(DISTINCT user_id) AS users,
           sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denied
    FROM events
    WHERE dt >= '{{week_start}}'
      AND dt < '{{week_end}}'
      AND tool IS NOT NULL
    GROUP BY tenant_id, server, tool
),
ranked AS (
    SELECT tenant_id, server, tool, calls, users, denied,
           row_number() OVER (PARTITION BY tenant_id ORDER BY calls DESC, server, tool) AS tool_rank
    FROM counts
)
SELECT tenant_id, tool_rank, server, tool, calls, users, denied
FROM ranked
WHERE tool_rank <= 10
ORDER BY tenant_id, tool_rank
