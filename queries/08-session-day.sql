-- A session's events on one day: the quick look at an agent session an
-- alert points to.
-- Params: {{session_id}}, {{day}} ('YYYY-MM-DD', UTC).
SELECT time, tenant_id, user_id, server, method, tool, resource, decision,
       status, error_type, latency_ms, client_id, source_ip, arguments, event_id
FROM events
WHERE dt = '{{day}}'
  AND session_id = '{{session_id}}'
ORDER BY time, event_id
