-- A user's week, one row per day: volume, denials, errors, and how widely
-- they reached (tools, resources, servers, sessions, source IPs, clients).
-- Params: {{tenant_id}}, {{user_id}}, {{week_start}} and {{week_end}}
-- ('YYYY-MM-DD'; end exclusive).
SELECT dt AS day,
       count(*) AS calls,
       sum(CASE WHEN decision = 'deny' OR status = 403 THEN 1 ELSE 0 END) AS denials,
       sum(CASE WHEN status >= 400 AND decision <> 'deny' THEN 1 ELSE 0 END) AS errors,
       count(DISTINCT tool) AS tools,
       count(DISTINCT resource) AS resources,
       count(DISTINCT server) AS servers,
       count(DISTINCT session_id) AS sessions,
       count(DISTINCT source_ip) AS source_ips,
       count(DISTINCT client_id) AS clients,
       min(time) AS first_call,
       max(time) AS last_call
FROM events
WHERE dt >= '{{week_start}}'
  AND dt < '{{week_end}}'
  AND tenant_id = '{{tenant_id}}'
  AND user_id = '{{user_id}}'
GROUP BY dt
ORDER BY dt
