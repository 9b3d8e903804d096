//! Reading rule files: each YAML document is parsed and checked on its
//! own, so a bad rule is refused (with its file, line and reason) and the
//! others in the same file and directory still load.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rsigma_parser::{CorrelationRule, Level, SigmaCollection, SigmaRule, parse_sigma_yaml};

use crate::alert::Severity;

/// The log source every tooltrail rule declares.
pub const PRODUCT: &str = "mcp";
pub const CATEGORY: &str = "tool_call";

/// Fields every correlation is grouped by, before its own: a correlation
/// counts one user's events, never a tenant's or the whole stream's.
pub const USER_KEY: [&str; 2] = ["tenant_id", "user_id"];

/// A rule that was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleError {
    pub file: PathBuf,
    /// 1-based line of the document (or the offending key, when known).
    pub line: usize,
    /// The rule's id or title, when it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule {rule}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Detection (one event) or correlation (events over time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Detection,
    Correlation,
}

/// What tooltrail knows of a loaded rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleInfo {
    pub id: String,
    /// The rule's `name`, by which correlations (and commands) may refer
    /// to it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub title: String,
    pub kind: RuleKind,
    pub severity: Severity,
    pub description: Option<String>,
    pub references: Vec<String>,
    pub file: PathBuf,
    pub line: usize,
    /// Whether its matches raise alerts: a detection rule only referenced
    /// by correlations (`generate: false`, the default) feeds them and
    /// raises none of its own.
    pub alerts: bool,
}

/// The rules of a directory: those that loaded and those refused.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    pub(crate) collection: SigmaCollection,
    rules: Vec<RuleInfo>,
    errors: Vec<RuleError>,
    files: usize,
}

/// A rule's severity from its `level` (`informational` is low).
pub fn severity(level: Option<Level>) -> Severity {
    match level {
        Some(Level::Critical) => Severity::Critical,
        Some(Level::High) => Severity::High,
        Some(Level::Medium) | None => Severity::Medium,
        Some(Level::Low) | Some(Level::Informational) => Severity::Low,
    }
}

impl RuleSet {
    /// Every `*.yml` and `*.yaml` file under `dir`, in path order. A
    /// directory that cannot be read is one error; so is each unreadable
    /// file.
    pub fn load_dir(dir: &Path) -> RuleSet {
        let mut files = Vec::new();
        let mut set = RuleSet::default();
        if let Err(error) = collect_files(dir, &mut files) {
            set.errors.push(RuleError {
                file: dir.to_path_buf(),
                line: 0,
                rule: None,
                reason: format!("cannot read the rules directory: {error}"),
            });
        }
        files.sort();
        let mut texts = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => texts.push((file, text)),
                Err(error) => set.errors.push(RuleError {
                    file,
                    line: 0,
                    rule: None,
                    reason: format!("cannot read: {error}"),
                }),
            }
        }
        let refs = texts.iter().map(|(f, t)| (f.as_path(), t.as_str()));
        let mut loaded = RuleSet::from_texts(refs);
        loaded.errors.splice(0..0, set.errors);
        loaded
    }

    /// Rules from `(file name, text)` pairs.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = (&'a Path, &'a str)>) -> RuleSet {
        let mut set = RuleSet::default();
        let mut correlations = Vec::new();
        let mut ids: HashMap<String, (PathBuf, usize)> = HashMap::new();
        for (file, text) in texts {
            set.files += 1;
            for doc in documents(file, text, &mut set.errors) {
                set.admit(doc, &mut ids, &mut correlations);
            }
        }
        // Correlations last: what they reference must have loaded.
        for (file, line, mut rule) in correlations {
            let name = rule.id.clone().unwrap_or_default();
            let missing: Vec<&String> = rule
                .rules
                .iter()
                .filter(|r| {
                    !set.collection
                        .rules
                        .iter()
                        .any(|d| names(d).any(|n| n == r.as_str()))
                })
                .collect();
            if let Some(first) = missing.first() {
                set.errors.push(RuleError {
                    file,
                    line,
                    rule: Some(name),
                    reason: format!("references rule `{first}`, which is not loaded"),
                });
                continue;
            }
            for (i, key) in USER_KEY.iter().enumerate() {
                if !rule.group_by.iter().any(|g| g == key) {
                    rule.group_by.insert(i, (*key).to_owned());
                }
            }
            set.rules.push(RuleInfo {
                id: name,
                name: rule.name.clone(),
                title: rule.title.clone(),
                kind: RuleKind::Correlation,
                severity: severity(rule.level),
                description: rule.description.clone(),
                references: rule.references.clone(),
                file,
                line,
                alerts: true,
            });
            if !rule.generate {
                for referenced in &rule.rules {
                    for info in set.rules.iter_mut() {
                        let detection = set
                            .collection
                            .rules
                            .iter()
                            .find(|d| d.id.as_deref() == Some(info.id.as_str()));
                        if detection.is_some_and(|d| names(d).any(|n| n == referenced.as_str())) {
                            info.alerts = false;
                        }
                    }
                }
            }
            set.collection.correlations.push(rule);
        }
        set.errors
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        // A detection referenced with `generate: true` somewhere alerts.
        for c in &set.collection.correlations {
            if c.generate {
                for info in set.rules.iter_mut() {
                    if c.rules
                        .iter()
                        .any(|r| *r == info.id || Some(r) == info.name.as_ref())
                    {
                        info.alerts = true;
                    }
                }
            }
        }
        set
    }

    fn admit(
        &mut self,
        doc: Document,
        ids: &mut HashMap<String, (PathBuf, usize)>,
        correlations: &mut Vec<(PathBuf, usize, CorrelationRule)>,
    ) {
        let Document { file, line, parsed } = doc;
        let refuse = |rule: Option<&str>, reason: String| RuleError {
            file: file.clone(),
            line,
            rule: rule.map(str::to_owned),
            reason,
        };
        let mut claim = |id: Option<&str>, title: &str| claim(ids, &file, line, id, title);
        for rule in parsed.rules {
            let checked = claim(rule.id.as_deref(), &rule.title).and_then(|id| {
                check_logsource(&rule)
                    .and_then(|()| {
                        rsigma_eval::compile_rule(&rule)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                    .map(|()| id.clone())
                    .map_err(|reason| refuse(Some(&id), reason))
            });
            match checked {
                Ok(id) => {
                    self.rules.push(RuleInfo {
                        id,
                        name: rule.name.clone(),
                        title: rule.title.clone(),
                        kind: RuleKind::Detection,
                        severity: severity(rule.level),
                        description: rule.description.clone(),
                        references: rule.references.clone(),
                        file: file.clone(),
                        line,
                        alerts: true,
                    });
                    self.collection.rules.push(rule);
                }
                Err(error) => {
                    self.errors.push(error);
                }
            }
        }
        for rule in parsed.correlations {
            match claim(rule.id.as_deref(), &rule.title) {
                Ok(_) => correlations.push((file.clone(), line, rule)),
                Err(error) => self.errors.push(error),
            }
        }
        for filter in parsed.filters {
            self.collection.filters.push(filter);
        }
    }

    /// The rules that loaded, detection rules first.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// The rules that were refused, and why.
    pub fn errors(&self) -> &[RuleError] {
        &self.errors
    }

    /// Rule files read.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The rule with this id, or else this name.
    pub fn rule(&self, id: &str) -> Option<&RuleInfo> {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .or_else(|| self.rules.iter().find(|r| r.name.as_deref() == Some(id)))
    }

    /// The parsed rules, for the evaluator.
    pub fn collection(&self) -> &SigmaCollection {
        &self.collection
    }

    /// Only the rules `ids` name, with the detection rules their
    /// correlations need; an unknown id is an error naming it.
    pub fn select(&self, ids: &[String]) -> Result<RuleSet, String> {
        let mut wanted: Vec<String> = Vec::new();
        for id in ids {
            let Some(info) = self.rule(id) else {
                return Err(format!("no loaded rule has the id `{id}`"));
            };
            wanted.push(info.id.clone());
            if let Some(c) = self
                .collection
                .correlations
                .iter()
                .find(|c| c.id.as_deref() == Some(info.id.as_str()))
            {
                for referenced in &c.rules {
                    if let Some(d) = self
                        .collection
                        .rules
                        .iter()
                        .find(|d| names(d).any(|n| n == referenced.as_str()))
                    {
                        wanted.extend(d.id.clone());
                    }
                }
            }
        }
        let keep = |id: Option<&String>| id.is_some_and(|id| wanted.contains(id));
        let mut collection = SigmaCollection::new();
        collection.rules = self
            .collection
            .rules
            .iter()
            .filter(|r| keep(r.id.as_ref()))
            .cloned()
            .collect();
        collection.correlations = self
            .collection
            .correlations
            .iter()
            .filter(|r| keep(r.id.as_ref()))
            .cloned()
            .collect();
        collection.filters = self.collection.filters.clone();
        Ok(RuleSet {
            collection,
            rules: self
                .rules
                .iter()
                .filter(|r| wanted.contains(&r.id))
                .map(|r| RuleInfo {
                    // A rule asked for alerts, even one that only feeds a
                    // correlation in the stream.
                    alerts: r.alerts
                        || ids
                            .iter()
                            .any(|id| *id == r.id || Some(id) == r.name.as_ref()),
                    ..r.clone()
                })
                .collect(),
            errors: Vec::new(),
            files: self.files,
        })
    }
}

/// Claims a rule's id, refusing a rule without one or with one already
/// taken.
fn claim(
    ids: &mut HashMap<String, (PathBuf, usize)>,
    file: &Path,
    line: usize,
    id: Option<&str>,
    title: &str,
) -> Result<String, RuleError> {
    let refuse = |rule: &str, reason: String| RuleError {
        file: file.to_path_buf(),
        line,
        rule: Some(rule.to_owned()),
        reason,
    };
    let Some(id) = id.filter(|id| !id.trim().is_empty()) else {
        return Err(refuse(
            title,
            "has no `id`: its alerts are named sigma:<id>".into(),
        ));
    };
    if let Some((other, other_line)) = ids.get(id) {
        return Err(refuse(
            id,
            format!("`id` is already used at {}:{other_line}", other.display()),
        ));
    }
    ids.insert(id.to_owned(), (file.to_path_buf(), line));
    Ok(id.to_owned())
}

/// The names a correlation may reference a detection rule by.
fn names(rule: &SigmaRule) -> impl Iterator<Item = &str> {
    rule.id.as_deref().into_iter().chain(rule.name.as_deref())
}

fn check_logsource(rule: &SigmaRule) -> Result<(), String> {
    let source = &rule.logsource;
    let product_ok = source.product.as_deref() == Some(PRODUCT);
    let category_ok = source.category.as_deref().is_none_or(|c| c == CATEGORY);
    if product_ok && category_ok && source.service.is_none() {
        return Ok(());
    }
    Err(format!(
        "logsource is {{product: {}, category: {}{}}}; tooltrail runs rules for \
         {{product: {PRODUCT}, category: {CATEGORY}}}",
        source.product.as_deref().unwrap_or("none"),
        source.category.as_deref().unwrap_or("none"),
        source
            .service
            .as_deref()
            .map(|s| format!(", service: {s}"))
            .unwrap_or_default(),
    ))
}

/// One YAML document of a file, parsed.
struct Document {
    file: PathBuf,
    line: usize,
    parsed: SigmaCollection,
}

/// The file's documents, each parsed alone so an error is placed at its
/// document. Files using `action: global`/`repeat` documents are parsed
/// whole (their documents depend on each other).
fn documents(file: &Path, text: &str, errors: &mut Vec<RuleError>) -> Vec<Document> {
    let whole = text.lines().any(|l| l.trim_start().starts_with("action:"));
    let parts: Vec<(usize, String)> = if whole {
        vec![(1, text.to_owned())]
    } else {
        split_documents(text)
    };
    let mut out = Vec::new();
    for (line, part) in parts {
        if part.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
        }) {
            continue;
        }
        let refuse = |reason: String| RuleError {
            file: file.to_path_buf(),
            line: locate(&reason, &part).map_or(line, |l| line + l),
            rule: title_of(&part),
            reason: one_line(&reason),
        };
        match parse_sigma_yaml(&part) {
            Ok(parsed) => {
                errors.extend(parsed.errors.iter().map(|e| refuse(e.clone())));
                out.push(Document {
                    file: file.to_path_buf(),
                    line,
                    parsed,
                });
            }
            Err(error) => errors.push(refuse(error.to_string())),
        }
    }
    out
}

/// A parser message on one line: pest's drawing of the condition is
/// reduced to its position and what it expected.
fn one_line(message: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    let Some(last) = lines.last() else {
        return first.to_owned();
    };
    let head = first.split(" -->").next().unwrap_or(first).trim_end();
    format!("{} {}", head, last.trim().trim_start_matches("= "))
}

/// `(first line, text)` of each `---`-separated document.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut parts = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            parts.push((i + 2, String::new()));
            continue;
        }
        let (_, part) = parts.last_mut().expect("one part at least");
        part.push_str(line);
        part.push('\n');
    }
    parts
}

/// The line within `doc` an error message points at, 0-based: a YAML
/// error's `line N`, or the first line naming a quoted token of it.
fn locate(message: &str, doc: &str) -> Option<usize> {
    if message.starts_with("Condition parse error") {
        return doc
            .lines()
            .position(|l| l.trim_start().starts_with("condition:"));
    }
    // The last position a YAML error names is where the broken construct
    // starts ("... at line 4 column 1, while parsing a flow sequence at line 3").
    if let Some(rest) = message
        .rsplit("line ")
        .next()
        .filter(|_| message.contains("line "))
    {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<usize>() {
            return Some(n.saturating_sub(1));
        }
    }
    let quoted = message
        .split(['\'', '`'])
        .skip(1)
        .step_by(2)
        .find(|t| t.len() >= 2)?;
    doc.lines().position(|l| l.contains(quoted))
}

/// The `id:` (or `title:`) of a document that did not parse, for the error.
pub(crate) fn title_of(doc: &str) -> Option<String> {
    let value = |key: &str| {
        doc.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
            .filter(|v| !v.is_empty())
    };
    value("id:").or_else(|| value("title:"))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The rules of one YAML text, every one loaded (tests across the module).
#[cfg(test)]
pub(crate) fn test_rules(yaml: &str) -> RuleSet {
    let set = RuleSet::from_texts([(Path::new("r.yml"), yaml)]);
    assert!(set.errors().is_empty(), "{:?}", set.errors());
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> RuleSet {
        RuleSet::from_texts([(Path::new("rules/a.yml"), text)])
    }

    const GOOD: &str = "title: good\nid: good\nlogsource: {product: mcp, category: tool_call}\n\
                        detection:\n  sel: {tool: x}\n  condition: sel\nlevel: high\n";

    #[test]
    fn a_bad_rule_is_refused_with_its_line_and_the_others_load() {
        let text = format!(
            "{GOOD}---\ntitle: windows\nid: win\nlogsource: {{product: windows}}\n\
             detection:\n  sel: {{CommandLine: x}}\n  condition: sel\n---\n\
             title: bad condition\nid: bad\nlogsource: {{product: mcp}}\ndetection:\n  \
             sel: {{tool: x}}\n  condition: sel and and\n---\ntitle: no id\n\
             logsource: {{product: mcp}}\ndetection:\n  sel: {{tool: y}}\n  condition: sel\n"
        );
        let set = load(&text);
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["good"]);
        assert_eq!(set.rules()[0].severity, Severity::High);
        let errors: Vec<String> = set.errors().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("rules/a.yml:9: rule win: logsource"),
            "{errors:#?}"
        );
        assert_eq!(
            errors[1],
            "rules/a.yml:21: rule bad: Condition parse error at 1:9: expected quantifier, ident, or not_op"
        );
        assert!(errors[1].contains("bad"), "{errors:#?}");
        assert!(errors[2].contains("rule no id: has no `id`"), "{errors:#?}");
    }

    #[test]
    fn yaml_errors_name_the_line_in_the_file() {
        let set = load(&format!(
            "{GOOD}---\ntitle: broken\nid: broken\ndetection: [unclosed\n"
        ));
        assert_eq!(set.rules().len(), 1);
        let error = &set.errors()[0];
        assert_eq!(error.line, 11, "{error}");
        assert!(error.reason.contains("YAML"), "{error}");
    }

    #[test]
    fn ids_are_unique_and_correlations_need_their_rules() {
        let corr = "title: c\nid: c1\ncorrelation:\n  type: event_count\n  rules: [missing]\n  \
                    timespan: 5m\n  condition: {gte: 3}\n";
        let set = load(&format!("{GOOD}---\n{GOOD}---\n{corr}"));
        let errors: Vec<String> = set.errors().iter().map(ToString::to_string).collect();
        assert!(
            errors[0].contains("`id` is already used at rules/a.yml:1"),
            "{errors:#?}"
        );
        assert!(
            errors[1].contains("references rule `missing`"),
            "{errors:#?}"
        );
    }

    #[test]
    fn correlations_count_per_user_and_their_rules_feed_them_silently() {
        let corr = "title: c\nid: c1\ncorrelation:\n  type: value_count\n  rules: [good]\n  \
                    group-by: [server]\n  timespan: 5m\n  condition: {gte: 3, field: resource}\n";
        let set = load(&format!("{GOOD}---\n{corr}"));
        assert!(set.errors().is_empty(), "{:?}", set.errors());
        let c = &set.collection().correlations[0];
        assert_eq!(c.group_by, ["tenant_id", "user_id", "server"]);
        assert!(!set.rule("good").expect("loaded").alerts);
        assert!(set.rule("c1").expect("loaded").alerts);
        let selected = set.select(&["c1".into()]).expect("selects");
        assert_eq!(selected.rules().len(), 2, "the correlation brings its rule");
        assert!(set.select(&["nope".into()]).unwrap_err().contains("nope"));
    }
}
