-- Every call of a tenant whose arguments contain a string (a file name, an
-- address, a query word), over the whole history, newest first.
-- Params: {{tenant_id}}, {{search}} (plain text, matched case-sensitively
-- inside the arguments' JSON text; a '%' or '_' in it is a LIKE wildcard).
SELECT time, user_id, session_id, server, tool, resource, decision, status,
       arguments, event_id
FROM events
WHERE tenant_id = '{{tenant_id}}'
  AND arguments LIKE '%{{search}}%'
ORDER BY time DESC, event_id
