//! The two OCSF classes as DataFusion SQL select lists: the one definition
//! of each, over the columns of the lake's `events` and `alerts` tables
//! (`tooltrail_schemas::lake::{events_schema, alerts_schema}`).
//!
//! Absent values are NULL, and NULL attributes are left out of the JSON, as
//! OCSF wants; an optional object whose source column is NULL is NULL as a
//! whole (`CASE … THEN NULL ELSE named_struct(…) END`), not an empty object.
//! Times are OCSF `timestamp_t`: milliseconds since the epoch.

use std::sync::LazyLock;

use super::SCHEMA_VERSION;

/// `metadata.product`: tooltrail, in this build's version.
const PRODUCT: &str = concat!(
    "named_struct('name', 'tooltrail', 'vendor_name', 'tooltrail', 'version', '",
    env!("CARGO_PKG_VERSION"),
    "')"
);

/// MCP methods that only read: `activity_id` 2 (Read). Every other method
/// (`tools/call` above all) is 99 (Other), named by `activity_name`.
const READS: &str = "(method LIKE '%/list' OR method LIKE '%/read' OR method LIKE '%/get')";

/// API Activity (class 6003, category 6) with the `security_control`
/// profile, one row per event.
pub(super) static API_ACTIVITY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "CASE WHEN {READS} THEN 2 ELSE 99 END AS activity_id, \
         CASE WHEN {READS} THEN 'Read' ELSE 'Other' END AS activity_name, \
         6 AS category_uid, \
         'Application Activity' AS category_name, \
         6003 AS class_uid, \
         'API Activity' AS class_name, \
         CASE WHEN {READS} THEN 600302 ELSE 600399 END AS type_uid, \
         CASE WHEN {READS} THEN 'API Activity: Read' ELSE 'API Activity: Other' END AS type_name, \
         1 AS severity_id, \
         'Informational' AS severity, \
         CAST(time AS BIGINT) / 1000 AS time, \
         0 AS timezone_offset, \
         CAST(latency_ms AS BIGINT) AS duration, \
         concat(user_id, ' ', method, CASE WHEN tool IS NULL THEN '' ELSE concat(' ', tool) END, \
                ' on ', server, ': ', decision) AS message, \
         CASE WHEN decision = 'allow' AND status < 400 THEN 1 ELSE 2 END AS status_id, \
         CASE WHEN decision = 'allow' AND status < 400 THEN 'Success' ELSE 'Failure' END AS status, \
         CAST(status AS VARCHAR) AS status_code, \
         reason AS status_detail, \
         CASE decision WHEN 'allow' THEN 1 WHEN 'deny' THEN 2 ELSE 0 END AS action_id, \
         CASE decision WHEN 'allow' THEN 'Allowed' WHEN 'deny' THEN 'Denied' ELSE 'Unknown' END AS action, \
         CASE decision WHEN 'allow' THEN 1 WHEN 'deny' THEN 2 ELSE 0 END AS disposition_id, \
         CASE decision WHEN 'allow' THEN 'Allowed' WHEN 'deny' THEN 'Blocked' ELSE 'Unknown' END AS disposition, \
         CASE WHEN policy_id IS NULL THEN NULL ELSE named_struct('uid', policy_id) END AS policy, \
         named_struct( \
           'version', '{SCHEMA_VERSION}', \
           'product', {PRODUCT}, \
           'uid', event_id, \
           'tenant_uid', tenant_id, \
           'profiles', make_array('security_control'), \
           'log_name', 'events', \
           'event_code', method, \
           'correlation_uid', trace_id, \
           'logged_time', CAST(received_at AS BIGINT) / 1000 \
         ) AS metadata, \
         named_struct( \
           'user', named_struct( \
             'uid', user_id, \
             'type_id', CASE principal_type WHEN 'user' THEN 1 WHEN 'service' THEN 4 WHEN 'agent' THEN 99 END, \
             'type', CASE principal_type WHEN 'user' THEN 'User' WHEN 'service' THEN 'Service' WHEN 'agent' THEN 'Agent' END \
           ), \
           'session', CASE WHEN session_id IS NULL THEN NULL ELSE named_struct('uid', session_id) END, \
           'app_name', client_id \
         ) AS actor, \
         named_struct( \
           'operation', coalesce(tool, method), \
           'service', named_struct('name', server), \
           'request', named_struct('uid', event_id), \
           'response', named_struct('code', status, 'error', error_type, 'error_message', reason) \
         ) AS api, \
         named_struct( \
           'ip', source_ip, \
           'name', CASE WHEN source_ip IS NULL THEN coalesce(client_id, 'unknown') ELSE client_id END \
         ) AS src_endpoint, \
         named_struct('svc_name', server) AS dst_endpoint, \
         CASE WHEN user_agent IS NULL THEN NULL ELSE named_struct('user_agent', user_agent) END AS http_request, \
         CASE WHEN resource IS NULL THEN NULL \
              ELSE make_array(named_struct('uid', resource, 'type', 'MCP resource')) END AS resources, \
         named_struct( \
           'method', method, \
           'tool', tool, \
           'gateway_id', gateway_id, \
           'agent_id', agent_id, \
           'scopes', scopes, \
           'required_scope', required_scope, \
           'jsonrpc_error_code', jsonrpc_error_code, \
           'arguments', arguments, \
           'attributes', attributes, \
           'extra', extra \
         ) AS unmapped"
    )
});

/// How each detector analyses, as `finding_info.analytic.type_id`:
/// 3 Statistical (a count against the user's baseline), 2 Behavioral (a
/// value or an hour new to the user), 1 Rule (Sigma rules, `sigma:<id>`,
/// too); 0 Unknown for a detector this
/// table does not know yet.
const ANALYTIC_TYPE_ID: &str = "CASE \
    WHEN detector IN ('denial_spike', 'malformed_spike', 'volume_spike', 'enumeration', 'first_seen_resource') THEN 3 \
    WHEN detector IN ('first_seen_tool', 'first_seen_server', 'first_seen_client', 'first_seen_ip', 'off_hours') THEN 2 \
    WHEN detector IN ('sensitive_tool', 'cross_tenant') OR starts_with(detector, 'sigma:') THEN 1 \
    ELSE 0 END";
const ANALYTIC_TYPE: &str = "CASE \
    WHEN detector IN ('denial_spike', 'malformed_spike', 'volume_spike', 'enumeration', 'first_seen_resource') THEN 'Statistical' \
    WHEN detector IN ('first_seen_tool', 'first_seen_server', 'first_seen_client', 'first_seen_ip', 'off_hours') THEN 'Behavioral' \
    WHEN detector IN ('sensitive_tool', 'cross_tenant') OR starts_with(detector, 'sigma:') THEN 'Rule' \
    ELSE 'Unknown' END";

/// What the detector counted or found new (`observation_parameter`).
const PARAMETER: &str = "CASE detector \
    WHEN 'denial_spike' THEN 'denied calls' \
    WHEN 'malformed_spike' THEN 'malformed calls' \
    WHEN 'volume_spike' THEN 'calls' \
    WHEN 'enumeration' THEN 'new resources' \
    WHEN 'first_seen_resource' THEN 'new resources' \
    WHEN 'off_hours' THEN 'minutes active off hours' \
    WHEN 'first_seen_tool' THEN 'tool' \
    WHEN 'first_seen_server' THEN 'server' \
    WHEN 'first_seen_client' THEN 'client' \
    WHEN 'first_seen_ip' THEN 'source ip' \
    ELSE detector END";

/// The analysis, in OCSF's words (`observation_type`, `observed_pattern`).
const OBSERVATION_TYPE: &str = "CASE \
    WHEN detector = 'off_hours' THEN 'Time Pattern Analysis' \
    WHEN detector LIKE 'first_seen_%' THEN 'Frequency Analysis' \
    ELSE 'Volume Analysis' END";
const OBSERVED_PATTERN: &str = "CASE \
    WHEN detector = 'off_hours' THEN 'OFF_HOURS' \
    WHEN detector LIKE 'first_seen_%' THEN 'UNSEEN' \
    ELSE 'HIGH_VOLUME' END";

/// Detection Finding (class 2004, category 2) with the `security_control`
/// profile, one row per alert version (`activity_id` 1 Create for the first,
/// 2 Update for a later one with a higher `repeats`).
pub(super) static DETECTION_FINDING: LazyLock<String> = LazyLock::new(|| {
    let observed = "get_field(evidence, 'observed')";
    let expected = "get_field(evidence, 'expected')";
    let new_values = "get_field(evidence, 'new_values')";
    let window = "named_struct( \
           'start_time', CAST(window_start AS BIGINT) / 1000, \
           'end_time', CAST(window_end AS BIGINT) / 1000, \
           'duration', (CAST(window_end AS BIGINT) - CAST(window_start AS BIGINT)) / 1000)";
    format!(
        "CASE WHEN repeats > 0 THEN 2 ELSE 1 END AS activity_id, \
         CASE WHEN repeats > 0 THEN 'Update' ELSE 'Create' END AS activity_name, \
         2 AS category_uid, \
         'Findings' AS category_name, \
         2004 AS class_uid, \
         'Detection Finding' AS class_name, \
         CASE WHEN repeats > 0 THEN 200402 ELSE 200401 END AS type_uid, \
         CASE WHEN repeats > 0 THEN 'Detection Finding: Update' ELSE 'Detection Finding: Create' END AS type_name, \
         CASE severity WHEN 'low' THEN 2 WHEN 'medium' THEN 3 WHEN 'high' THEN 4 WHEN 'critical' THEN 5 ELSE 0 END AS severity_id, \
         CASE severity WHEN 'low' THEN 'Low' WHEN 'medium' THEN 'Medium' WHEN 'high' THEN 'High' \
                       WHEN 'critical' THEN 'Critical' ELSE 'Unknown' END AS severity, \
         CAST(time AS BIGINT) / 1000 AS time, \
         0 AS timezone_offset, \
         CAST(window_start AS BIGINT) / 1000 AS start_time, \
         CAST(window_end AS BIGINT) / 1000 AS end_time, \
         1 AS status_id, \
         'New' AS status, \
         title AS message, \
         true AS is_alert, \
         score AS risk_score, \
         3 AS action_id, \
         'Observed' AS action, \
         15 AS disposition_id, \
         'Detected' AS disposition, \
         named_struct( \
           'version', '{SCHEMA_VERSION}', \
           'product', {PRODUCT}, \
           'uid', concat(alert_id, '/', CAST(coalesce(repeats, 0) AS VARCHAR)), \
           'tenant_uid', tenant_id, \
           'profiles', make_array('security_control'), \
           'log_name', 'alerts', \
           'event_code', detector \
         ) AS metadata, \
         named_struct( \
           'uid', alert_id, \
           'title', title, \
           'desc', explanation, \
           'types', make_array(detector), \
           'analytic', named_struct('name', detector, 'type_id', {ANALYTIC_TYPE_ID}, 'type', {ANALYTIC_TYPE}), \
           'created_time', CAST(time AS BIGINT) / 1000, \
           'first_seen_time', CAST(window_start AS BIGINT) / 1000, \
           'last_seen_time', CAST(window_end AS BIGINT) / 1000, \
           'data_sources', make_array('events') \
         ) AS finding_info, \
         CASE WHEN {observed} IS NULL AND {new_values} IS NULL THEN NULL ELSE make_array(named_struct( \
           'analysis_targets', make_array(named_struct('name', user_id, 'type', 'User')), \
           'anomalies', make_array(named_struct( \
             'observation_parameter', {PARAMETER}, \
             'observation_type', {OBSERVATION_TYPE}, \
             'observed_pattern', {OBSERVED_PATTERN}, \
             'observations', make_array(named_struct( \
               'value', coalesce(CAST({observed} AS VARCHAR), array_to_string({new_values}, ', ')), \
               'timespan', {window} \
             )) \
           )), \
           'baselines', CASE WHEN {expected} IS NULL THEN NULL ELSE make_array(named_struct( \
             'observation_parameter', {PARAMETER}, \
             'observation_type', {OBSERVATION_TYPE}, \
             'observations', make_array(named_struct('value', CAST({expected} AS VARCHAR))) \
           )) END \
         )) END AS anomaly_analyses, \
         make_array(named_struct( \
           'name', 'sample events', \
           'actor', named_struct('user', named_struct('uid', user_id)), \
           'data', named_struct( \
             'event_ids', get_field(evidence, 'event_ids'), \
             'new_values', {new_values} \
           ) \
         )) AS evidences, \
         named_struct( \
           'detector', detector, \
           'score', score, \
           'p_value', get_field(evidence, 'p_value'), \
           'repeats', repeats, \
           'alert_version', alert_version \
         ) AS unmapped"
    )
});
