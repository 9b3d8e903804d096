//! `tooltrail rules lint`: what would stop a rule from loading (syntax,
//! log source, ids, references), the Sigma specification's own checks
//! (rsigma's linter), field names the MCP log source does not have, and
//! rules without tests.

use std::path::{Path, PathBuf};

use rsigma_parser::{Detection, lint_yaml_str};

use super::{RuleKind, RuleSet, fields};

/// How serious a finding is: an error keeps the rule from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One finding, placed in its file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub file: PathBuf,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub level: Level,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        write!(f, "{}:{}: {level}: ", self.file.display(), self.line)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule {rule}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Lints the rules of `dir` (already loaded as `set`), in file order.
pub fn lint(dir: &Path, set: &RuleSet) -> Vec<Finding> {
    let mut findings: Vec<Finding> = set
        .errors()
        .iter()
        .map(|e| Finding {
            file: e.file.clone(),
            line: e.line,
            rule: e.rule.clone(),
            level: Level::Error,
            message: e.reason.clone(),
        })
        .collect();
    let _ = dir;
    let mut files: Vec<&Path> = set.rules().iter().map(|r| r.file.as_path()).collect();
    files.extend(set.errors().iter().map(|e| e.file.as_path()));
    files.sort();
    files.dedup();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        // Document by document: the linter's lines count from its text.
        for (start, doc) in super::load::split_documents(&text) {
            for warning in lint_yaml_str(&doc) {
                let level = match warning.severity {
                    rsigma_parser::lint::Severity::Error => Level::Error,
                    rsigma_parser::lint::Severity::Warning => Level::Warning,
                    _ => Level::Info,
                };
                findings.push(Finding {
                    file: file.to_path_buf(),
                    line: start + warning.span.map_or(0, |s| s.start_line as usize),
                    rule: super::load::title_of(&doc),
                    level,
                    message: format!(
                        "{} ({}, at {})",
                        warning.message, warning.rule, warning.path
                    ),
                });
            }
        }
        for info in set.rules().iter().filter(|r| r.file == file) {
            for (field, line) in unknown_fields(set, &info.id, &text) {
                findings.push(Finding {
                    file: file.to_path_buf(),
                    line,
                    rule: Some(info.id.clone()),
                    level: Level::Warning,
                    message: format!(
                        "field `{field}` is not in the MCP log source (contract fields, \
                         `arguments.<path>`, `attributes.<key>`; see rules/README.md): it \
                         only matches events with such an extra field"
                    ),
                });
            }
        }
    }
    let report = super::exemplars::run(set);
    for id in &report.untested {
        let info = set.rule(id).expect("a loaded rule");
        findings.push(Finding {
            file: info.file.clone(),
            line: info.line,
            rule: Some(id.clone()),
            level: Level::Warning,
            message: "has no tests: add `rsigma.exemplars` cases that must and must not match"
                .into(),
        });
    }
    findings.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    findings
}

/// Fields a rule names that the log source lacks, with the line of the
/// file that first names each.
fn unknown_fields(set: &RuleSet, id: &str, text: &str) -> Vec<(String, usize)> {
    let collection = set.collection();
    let mut names: Vec<String> = Vec::new();
    if let Some(rule) = collection
        .rules
        .iter()
        .find(|r| r.id.as_deref() == Some(id))
    {
        for d in rule.detection.named.values() {
            field_names(d, &mut names);
        }
    }
    if set
        .rule(id)
        .is_some_and(|r| r.kind == RuleKind::Correlation)
        && let Some(c) = collection
            .correlations
            .iter()
            .find(|r| r.id.as_deref() == Some(id))
    {
        names.extend(c.group_by.iter().cloned());
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| !fields::known(n))
        .map(|n| {
            let line = text
                .lines()
                .position(|l| {
                    l.trim_start().starts_with(n.as_str()) || l.contains(&format!(" {n}"))
                })
                .map_or(1, |i| i + 1);
            (n, line)
        })
        .collect()
}

fn field_names(d: &Detection, out: &mut Vec<String>) {
    match d {
        Detection::AllOf(items) => out.extend(items.iter().filter_map(|i| i.field.name.clone())),
        Detection::AnyOf(ds) | Detection::And(ds) => ds.iter().for_each(|d| field_names(d, out)),
        Detection::ArrayMatch { field, .. } => out.push(field.clone()),
        _ => {}
    }
}
