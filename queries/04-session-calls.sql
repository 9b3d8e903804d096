-- A session's calls, across all days: what an agent session did, in order.
-- Params: {{session_id}} (e.g. 'mcp-68c32045e007c4ca').
SELECT time, tenant_id, user_id, server, method, tool, resource, decision,
       status, error_type, latency_ms, client_id, source_ip, arguments, event_id
FROM events
WHERE session_id = '{{session_id}}'
ORDER BY time, event_id
