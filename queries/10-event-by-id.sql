-- One event by its id, with every column but the attributes map: the lookup
-- behind an id pasted from an alert, a log line or a ticket.
-- Params: {{event_id}}.
-- scopes is flattened with array_to_string so that CSV output can hold it.
SELECT event_id, time, dt, tenant_id, user_id, principal_type, server, method,
       tool, resource, arguments, decision, status, array_to_string(scopes, ' ') AS scopes,
       required_scope, policy_id, reason, error_type, jsonrpc_error_code,
       latency_ms, client_id, agent_id, session_id, gateway_id, source_ip,
       user_agent, trace_id, extra, received_at, source_kind, source_name,
       source_offset
FROM events
WHERE event_id = '{{event_id}}'
