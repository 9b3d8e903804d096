-- The alerts of one day, each joined with its evidence events (the sample
-- ids in evidence.event_ids), to see what the detector saw.
-- Params: {{tenant_id}}, {{day}} ('YYYY-MM-DD': the alerts' partition; their
-- evidence is on that day or before it).
-- An alert may be stored more than once (later copies carry a higher
-- `repeats`): the copy with the highest repeats is the current one.
-- unnest() is in a plain SELECT list in a CTE: DataFusion does not take the
-- lateral form (FROM alerts, unnest(...)) with a column of the outer table.
WITH latest AS (
    SELECT alert_id, detector, severity, score, title, evidence,
           row_number() OVER (PARTITION BY alert_id ORDER BY repeats DESC) AS copy
    FROM alerts
    WHERE dt = '{{day}}'
      AND tenant_id = '{{tenant_id}}'
),
samples AS (
    SELECT alert_id, detector, severity, score, title,
           unnest(evidence.event_ids) AS event_id
    FROM latest
    WHERE copy = 1
)
SELECT a.alert_id, a.detector, a.severity, a.score, a.title,
       e.time, e.user_id, e.server, e.tool, e.resource, e.decision, e.status,
       e.source_ip, e.session_id, e.event_id
FROM samples a
JOIN events e ON e.event_id = a.event_id
WHERE e.dt <= '{{day}}'
  AND e.tenant_id = '{{tenant_id}}'
ORDER BY a.alert_id, e.time, e.event_id
