-- A user's timeline for one day: every call they made, in order, with
-- where it came from (session, client, IP) and how it ended.
-- Params: {{tenant_id}}, {{user_id}}, {{day}} ('YYYY-MM-DD', UTC).
SELECT time, session_id, server, method, tool, resource, decision, status,
       error_type, latency_ms, client_id, agent_id, source_ip, arguments, event_id
FROM events
WHERE dt = '{{day}}'
  AND tenant_id = '{{tenant_id}}'
  AND user_id = '{{user_id}}'
ORDER BY time, event_id
