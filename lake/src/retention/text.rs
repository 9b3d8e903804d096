//! Retention as text, what `tooltrail retention` prints: the plan as a table (what is deleted,
//! rewritten and kept, and why), the outcome, one summary line, the holds.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::fmt::Write;

use deltalake::kernel::Version;

use super::apply::Skipped;
use super::{KeptReason, LegalHold, RetentionPlan, RetentionSummary, TableKind, format_time};

fn tenant_name(table: TableKind, tenant: Option<&str>) -> &str {
    match tenant {
        Some(t) => t,
        None if table.has_tenants() => "(tenant unknown)",
        None => "(all)",
    }
}

fn tenants(table: TableKind, list: &[(Option<String>, u64)]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|(t, n)| format!("{} {n}", tenant_name(table, t.as_deref())))
        .collect();
    parts.join(", ")
}

fn row(
    out: &mut String,
    action: &str,
    table: TableKind,
    partition: &str,
    rows: u64,
    bytes: &str,
    rest: &str,
) {
    let _ = writeln!(
        out,
        "{action:<8} {:<12} {partition:<24} {rows:>9} {bytes:>12}  {rest}",
        table.name()
    );
}

/// The plan: a header, one line per deletion and rewrite, one per group of
/// kept rows (same table, tenant and reason).
pub fn plan(plan: &RetentionPlan, lake: &dyn Display, dry_run: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "retention as of {} on {}{}",
        format_time(&plan.now),
        lake,
        if dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<24} {:>9} {:>12}  TENANTS / REASON",
        "ACTION", "TABLE", "PARTITION", "ROWS", "BYTES"
    );
    for d in &plan.deletions {
        let table = d.partition.table;
        let rest = tenants(table, &d.tenants);
        row(
            &mut out,
            "delete",
            table,
            d.partition.key(),
            d.rows,
            &d.bytes.to_string(),
            &rest,
        );
    }
    for r in &plan.rewrites {
        let table = r.partition.table;
        let bytes: u64 = r.drop.iter().chain(&r.rewrite).map(|f| f.bytes).sum();
        let rest = format!(
            "removes {}; keeps {} rows ({} files dropped, {} rewritten)",
            tenants(table, &r.removed),
            r.rows_kept,
            r.drop.len(),
            r.rewrite.len()
        );
        let key = r.partition.key();
        row(
            &mut out,
            "rewrite",
            table,
            key,
            r.rows_removed(),
            &bytes.to_string(),
            &rest,
        );
    }
    for group in kept_groups(plan) {
        let partitions = if group.count == 1 {
            group.first.clone()
        } else {
            format!(
                "{} .. {} ({} partitions)",
                group.first, group.last, group.count
            )
        };
        let rest = format!(
            "{}: {}",
            tenant_name(group.table, group.tenant.as_deref()),
            group.reason
        );
        row(
            &mut out,
            "keep",
            group.table,
            &partitions,
            group.rows,
            "-",
            &rest,
        );
    }
    out
}

struct KeptGroup {
    table: TableKind,
    tenant: Option<String>,
    reason: String,
    first: String,
    last: String,
    count: usize,
    rows: u64,
}

fn kept_groups(plan: &RetentionPlan) -> Vec<KeptGroup> {
    let mut groups: BTreeMap<(TableKind, Option<String>, String), KeptGroup> = BTreeMap::new();
    for kept in &plan.kept {
        let table = kept.partition.table;
        // Retention "until" differs per partition: group by the retention.
        let (key, reason) = match &kept.reason {
            KeptReason::WithinRetention { retention, until } => {
                let d = crate::retention::config::format_duration(*retention);
                (
                    format!("within retention ({d})"),
                    format!(
                        "within retention ({d}); the oldest is due {}",
                        format_time(until)
                    ),
                )
            }
            hold @ KeptReason::Hold(_) => (hold.to_string(), hold.to_string()),
        };
        let group = groups
            .entry((table, kept.tenant.clone(), key))
            .or_insert_with(|| KeptGroup {
                table,
                tenant: kept.tenant.clone(),
                reason,
                first: kept.partition.key().to_owned(),
                last: kept.partition.key().to_owned(),
                count: 0,
                rows: 0,
            });
        group.count += 1;
        group.rows += kept.rows;
        group.last = kept.partition.key().to_owned();
    }
    groups.into_values().collect()
}

/// `dry run: would delete …`.
pub fn dry_run_line(plan: &RetentionPlan) -> String {
    let rows: u64 = plan.deletions.iter().map(|d| d.rows).sum();
    let bytes: u64 = plan.deletions.iter().map(|d| d.bytes).sum();
    let rewritten: u64 = plan.rewrites.iter().map(|r| r.rows_removed()).sum();
    format!(
        "dry run: would delete {} partition(s) ({rows} rows, {bytes} bytes) and rewrite {} ({rewritten} rows removed); {}",
        plan.deletions.len(),
        plan.rewrites.len(),
        kept_clause(plan)
    )
}

fn kept_clause(plan: &RetentionPlan) -> String {
    let held: u64 = plan
        .kept
        .iter()
        .filter(|k| matches!(k.reason, KeptReason::Hold(_)))
        .map(|k| k.rows)
        .sum();
    let young: usize = plan.young.values().sum();
    format!(
        "kept {held} rows on legal hold, {} rows within a longer retention, {young} partition(s) within retention",
        plan.kept.iter().map(|k| k.rows).sum::<u64>() - held
    )
}

/// One line per partition left for later or failed.
pub fn outcome(summary: &RetentionSummary) -> String {
    let mut out = String::new();
    let mut line = |label: &str, s: &Skipped| {
        let table = s.partition.table;
        row(&mut out, label, table, s.partition.key(), 0, "-", &s.why);
    };
    for s in &summary.skipped {
        line("skipped", s);
    }
    for s in &summary.failed {
        line("failed", s);
    }
    out
}

/// `deleted … rewrote …; kept …`.
pub fn summary_line(plan: &RetentionPlan, summary: &RetentionSummary) -> String {
    let deleted_rows: u64 = summary.deleted.iter().map(|d| d.rows).sum();
    let deleted_bytes: u64 = summary.deleted.iter().map(|d| d.bytes).sum();
    let rewritten_rows: u64 = summary.rewritten.iter().map(|d| d.rows).sum();
    let entries = versions(summary);
    format!(
        "deleted {} partition(s) ({deleted_rows} rows, {deleted_bytes} bytes), rewrote {} ({rewritten_rows} rows removed); {}; skipped {}, failed {}{}{entries}",
        summary.deleted.len(),
        summary.rewritten.len(),
        kept_clause(plan),
        summary.skipped.len(),
        summary.failed.len(),
        if summary.stopped {
            "; stopped early"
        } else {
            ""
        },
    )
}

/// `; events log entry 12`, `; events log entries 12..14, quarantine log
/// entry 3`: the table versions the run's commits created.
fn versions(summary: &RetentionSummary) -> String {
    let mut by_table: BTreeMap<TableKind, (Version, Version)> = BTreeMap::new();
    for done in summary.deleted.iter().chain(&summary.rewritten) {
        let v = done.version;
        by_table
            .entry(done.partition.table)
            .and_modify(|(a, b)| {
                *a = (*a).min(v);
                *b = (*b).max(v);
            })
            .or_insert((v, v));
    }
    let parts: Vec<String> = by_table
        .into_iter()
        .map(|(table, (a, b))| {
            if a == b {
                format!("{table} log entry {a}")
            } else {
                format!("{table} log entries {a}..{b}")
            }
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

/// The holds as a table.
pub fn holds(holds: &[LegalHold]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:<8} {:<16} RANGE / REASON",
        "ID", "TENANT", "SOURCE", "SET BY"
    );
    for h in holds {
        let source = match h.source {
            crate::retention::HoldSource::Config => "config",
            crate::retention::HoldSource::Api => "api",
        };
        let _ = writeln!(
            out,
            "{:<40} {:<16} {source:<8} {:<16} {}: {}",
            h.id,
            h.tenant,
            h.created_by.as_deref().unwrap_or("-"),
            h.range(),
            h.reason
        );
    }
    let _ = writeln!(out, "{} legal hold(s)", holds.len());
    out
}
