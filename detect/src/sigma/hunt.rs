//! Hunting back: rules run over the lake's history.
//!
//! The lake's events are replayed through the same engine the stream uses,
//! so a hunt matches exactly what the rules would have matched live. To
//! read less than the whole range, [`prefilter`] turns the rules'
//! detections into a SQL condition that every matching event satisfies (a
//! superset: anything it cannot translate, such as regular expressions,
//! CIDR ranges or negations, it leaves open); only those rows are read
//! and replayed.

use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Modifier, Quantifier, SelectorPattern, SigmaRule,
    SigmaString, SigmaValue, SpecialChar, StringPart, detection_name_matches,
};
use tooltrail_schemas::ToolCallEvent;

use super::{RuleSet, SigmaDetector};
use crate::alert::Alert;

/// A SQL condition over the `events` table that every event the rules
/// can match satisfies; `TRUE` when nothing narrows it.
pub fn prefilter(rules: &RuleSet) -> String {
    let collection = rules.collection();
    let mut any: Vec<Sql> = Vec::new();
    for rule in &collection.rules {
        any.push(rule_condition(rule));
    }
    // Correlations are fed by their detection rules, which are in the set.
    Sql::or(any).render()
}

/// The columns a replay needs for `rules`: every column the events table
/// has unless no rule looks at arguments, extras or keywords.
pub fn needs_arguments(rules: &RuleSet) -> bool {
    rules
        .collection()
        .rules
        .iter()
        .any(|rule| rule.detection.named.values().any(touches_json))
}

fn touches_json(d: &Detection) -> bool {
    match d {
        Detection::AllOf(items) => items.iter().any(|i| match &i.field.name {
            None => true,
            // Any contract field but the JSON-valued ones is its own column.
            Some(name) => !tooltrail_schemas::FIELDS
                .iter()
                .any(|f| f.name == name && !super::fields::NESTED.contains(&f.name)),
        }),
        Detection::AnyOf(ds) => ds.iter().any(touches_json),
        _ => true,
    }
}

/// A condition under construction; `True` is "cannot narrow".
#[derive(Debug, Clone, PartialEq)]
enum Sql {
    True,
    Leaf(String),
    And(Vec<Sql>),
    Or(Vec<Sql>),
}

impl Sql {
    fn and(parts: Vec<Sql>) -> Sql {
        let parts: Vec<Sql> = parts.into_iter().filter(|p| *p != Sql::True).collect();
        match parts.len() {
            0 => Sql::True,
            1 => parts.into_iter().next().expect("one part"),
            _ => Sql::And(parts),
        }
    }

    fn or(parts: Vec<Sql>) -> Sql {
        if parts.is_empty() || parts.contains(&Sql::True) {
            return Sql::True;
        }
        if parts.len() == 1 {
            return parts.into_iter().next().expect("one part");
        }
        Sql::Or(parts)
    }

    fn render(&self) -> String {
        match self {
            Sql::True => "TRUE".into(),
            Sql::Leaf(s) => s.clone(),
            Sql::And(parts) => format!(
                "({})",
                parts
                    .iter()
                    .map(Sql::render)
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            Sql::Or(parts) => format!(
                "({})",
                parts
                    .iter()
                    .map(Sql::render)
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        }
    }
}

fn rule_condition(rule: &SigmaRule) -> Sql {
    let named = &rule.detection.named;
    let conditions: Vec<Sql> = rule
        .detection
        .conditions
        .iter()
        .map(|c| condition(c, rule))
        .collect();
    if conditions.is_empty() || named.is_empty() {
        return Sql::True;
    }
    Sql::or(conditions)
}

fn condition(expr: &ConditionExpr, rule: &SigmaRule) -> Sql {
    let named = &rule.detection.named;
    match expr {
        ConditionExpr::And(parts) => Sql::and(parts.iter().map(|p| condition(p, rule)).collect()),
        ConditionExpr::Or(parts) => Sql::or(parts.iter().map(|p| condition(p, rule)).collect()),
        // A negation can hold on any row: left open.
        ConditionExpr::Not(_) => Sql::True,
        ConditionExpr::Identifier(name) => named.get(name).map_or(Sql::True, detection),
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let mut names: Vec<&String> = named
                .keys()
                .filter(|n| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => detection_name_matches(n, p),
                })
                .collect();
            names.sort();
            let parts: Vec<Sql> = names.iter().map(|n| detection(&named[*n])).collect();
            match quantifier {
                Quantifier::All => Sql::and(parts),
                Quantifier::Any | Quantifier::Count(_) => Sql::or(parts),
            }
        }
    }
}

fn detection(d: &Detection) -> Sql {
    match d {
        Detection::AllOf(items) => Sql::and(items.iter().map(item).collect()),
        Detection::AnyOf(ds) => Sql::or(ds.iter().map(detection).collect()),
        Detection::Keywords(values) => keyword(values, &[]),
        _ => Sql::True,
    }
}

/// Every string of an event as one text, for keywords: the contract's text
/// columns, the arguments' and extra fields' JSON, scopes and attributes.
fn all_text() -> String {
    let mut parts: Vec<String> = super::fields::text_fields().map(str::to_owned).collect();
    parts.extend([
        "arguments".into(),
        "extra".into(),
        "array_to_string(scopes, ' ')".into(),
        "array_to_string(map_values(attributes), ' ')".into(),
    ]);
    format!("concat_ws(' ', {})", parts.join(", "))
}

/// A keyword selection (no field): plain values are looked for whole,
/// regular expressions by the literals every match of them holds.
fn keyword(values: &[SigmaValue], mods: &[Modifier]) -> Sql {
    let needles = match mods {
        [] => values
            .iter()
            .map(|v| match v {
                SigmaValue::String(s) => longest_plain(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>(),
        [Modifier::Re] => regex_needles(values),
        _ => None,
    };
    needles_in(&[&all_text()], needles)
}

/// Rows where one of `needles` is in one of `texts`; open without needles.
fn needles_in(texts: &[&str], needles: Option<Vec<String>>) -> Sql {
    let Some(needles) = needles else {
        return Sql::True;
    };
    let mut any = Vec::new();
    for needle in &needles {
        // Only what JSON writes unchanged can be looked for in JSON text.
        if needle.len() < 3
            || needle
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
        {
            return Sql::True;
        }
        let escaped = needle
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
            .replace('\'', "''");
        for text in texts {
            any.push(Sql::Leaf(format!("{text} ILIKE '%{escaped}%'")));
        }
    }
    Sql::or(any)
}

/// The longest run of a Sigma string without wildcards.
fn longest_plain(s: &SigmaString) -> Option<String> {
    s.parts
        .iter()
        .filter_map(|p| match p {
            StringPart::Plain(text) => Some(text.clone()),
            StringPart::Special(_) => None,
        })
        .max_by_key(String::len)
}

/// Literals one of which every match of each pattern starts with; `None`
/// when some pattern has no such finite set.
fn regex_needles(values: &[SigmaValue]) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut needles = Vec::new();
    for value in values {
        let SigmaValue::String(s) = value else {
            return None;
        };
        let hir = regex_syntax::Parser::new().parse(&s.original).ok()?;
        let mut extractor = Extractor::new();
        extractor.kind(ExtractKind::Prefix);
        let seq = extractor.extract(&hir);
        for literal in seq.literals()? {
            needles.push(
                String::from_utf8(literal.as_bytes().to_vec())
                    .ok()?
                    .to_lowercase(),
            );
        }
    }
    needles.sort();
    needles.dedup();
    (!needles.is_empty()).then_some(needles)
}

fn item(item: &DetectionItem) -> Sql {
    let mods = &item.field.modifiers;
    let Some(name) = &item.field.name else {
        return keyword(&item.values, mods);
    };
    if mods.as_slice() == [Modifier::Re] && super::fields::text_fields().any(|f| f == name) {
        // The same regular expression engine as the rule's: exact.
        let parts = item
            .values
            .iter()
            .map(|v| match v {
                SigmaValue::String(s) => Sql::Leaf(format!(
                    "regexp_like({name}, '{}')",
                    s.original.replace('\'', "''")
                )),
                _ => Sql::True,
            })
            .collect();
        return Sql::or(parts);
    }
    if mods.as_slice() == [Modifier::Re] && (name.starts_with("arguments.") || name == "arguments")
    {
        return needles_in(&["arguments"], regex_needles(&item.values));
    }
    let known = [
        Modifier::Contains,
        Modifier::StartsWith,
        Modifier::EndsWith,
        Modifier::All,
        Modifier::Cased,
    ];
    if mods.iter().any(|m| !known.contains(m)) || item.values.is_empty() {
        return Sql::True;
    }
    let all = mods.contains(&Modifier::All);
    let (column, inside_json) = if super::fields::text_fields().any(|f| f == name) {
        (name.as_str(), false)
    } else if name.starts_with("arguments.") || name == "arguments" {
        ("arguments", true)
    } else {
        return Sql::True;
    };
    let mut parts = Vec::new();
    for value in &item.values {
        let SigmaValue::String(s) = value else {
            // Numbers and booleans in arguments are text in the column too,
            // but their spelling may differ: left open.
            return Sql::True;
        };
        let Some(pattern) = like_pattern(s, mods, inside_json) else {
            return Sql::True;
        };
        parts.push(Sql::Leaf(format!("{column} ILIKE {pattern}")));
    }
    if all { Sql::and(parts) } else { Sql::or(parts) }
}

/// An `ILIKE` pattern literal for a Sigma string: wildcards become `%` and
/// `_`, the rest escaped. Inside the arguments' JSON text a value may sit
/// anywhere, and only strings that JSON writes unchanged can be looked for.
fn like_pattern(s: &SigmaString, mods: &[Modifier], inside_json: bool) -> Option<String> {
    let mut body = String::new();
    for part in &s.parts {
        match part {
            StringPart::Plain(text) => {
                for c in text.chars() {
                    if inside_json && (c == '"' || c == '\\' || c.is_control() || !c.is_ascii()) {
                        return None;
                    }
                    match c {
                        '%' | '_' | '\\' => {
                            body.push('\\');
                            body.push(c);
                        }
                        '\'' => body.push_str("''"),
                        c => body.push(c),
                    }
                }
            }
            StringPart::Special(SpecialChar::WildcardMulti) => body.push('%'),
            StringPart::Special(SpecialChar::WildcardSingle) => body.push('_'),
        }
    }
    let open_start =
        inside_json || mods.contains(&Modifier::Contains) || mods.contains(&Modifier::EndsWith);
    let open_end =
        inside_json || mods.contains(&Modifier::Contains) || mods.contains(&Modifier::StartsWith);
    Some(format!(
        "'{}{body}{}'",
        if open_start { "%" } else { "" },
        if open_end { "%" } else { "" }
    ))
}

/// What a hunt found.
#[derive(Debug, Default)]
pub struct Found {
    /// Events replayed (those the prefilter let through).
    pub events: u64,
    /// The alerts the rules would have raised, repeats folded in.
    pub alerts: Vec<Alert>,
}

/// Replays events (in event-time order) through a rule set.
pub struct Hunter {
    detector: SigmaDetector,
    found: Found,
}

impl Hunter {
    /// `suppression_secs` as the stream uses, so a hunt's alerts are the
    /// ones the stream would have raised, with the same ids.
    pub fn new(rules: RuleSet, suppression_secs: i64) -> Self {
        Hunter {
            detector: SigmaDetector::fixed(rules, suppression_secs),
            found: Found::default(),
        }
    }

    pub fn observe(&mut self, event: &ToolCallEvent) {
        self.found.events += 1;
        self.detector.observe(event, &mut self.found.alerts);
    }

    pub fn finish(mut self) -> Found {
        self.detector.finish(&mut self.found.alerts);
        self.found.alerts = crate::alert::merge_repeats(std::mem::take(&mut self.found.alerts));
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sigma::load::test_rules as rules;

    const HEAD: &str = "title: t\nid: r1\nlogsource: {product: mcp, category: tool_call}\n";

    #[test]
    fn plain_selections_narrow_and_negations_stay_open() {
        let set = rules(&format!(
            "{HEAD}detection:\n  sel:\n    tool|contains: ['delete', 'drop']\n    decision: allow\n  \
             keys:\n    arguments.key|startswith: 'AKIA'\n  filter:\n    server: test\n  \
             condition: (sel or keys) and not filter\n"
        ));
        assert_eq!(
            prefilter(&set),
            "(((tool ILIKE '%delete%' OR tool ILIKE '%drop%') AND decision ILIKE 'allow') \
             OR arguments ILIKE '%AKIA%')"
        );
        assert!(needs_arguments(&set));
    }

    #[test]
    fn what_cannot_be_translated_reads_everything() {
        let set = rules(&format!(
            "{HEAD}detection:\n  sel:\n    source_ip|cidr: '10.0.0.0/8'\n  condition: sel\n"
        ));
        assert_eq!(prefilter(&set), "TRUE");
        let set = rules(&format!(
            "{HEAD}detection:\n  sel:\n    arguments.text: 'caf\u{e9}'\n  condition: sel\n"
        ));
        assert_eq!(prefilter(&set), "TRUE", "non-ASCII may be escaped in JSON");
    }

    #[test]
    fn keywords_and_regular_expressions_look_for_their_literals() {
        let set = rules(&format!(
            "{HEAD}detection:\n  key:\n    '|re': '\\b(?:AKIA|ASIA)[A-Z0-9]{{16}}\\b'\n  \
             tool:\n    tool|re: '^delete_.*'\n  condition: key or tool\n"
        ));
        let sql = prefilter(&set);
        assert!(sql.contains("regexp_like(tool, '^delete_.*')"), "{sql}");
        assert!(sql.contains("concat_ws(' ', event_id, tenant_id"), "{sql}");
        assert!(sql.contains(") ILIKE '%akia%' OR "), "{sql}");
        assert!(sql.contains(") ILIKE '%asia%'"), "{sql}");
        // A pattern any text can match: no literal to look for.
        let set = rules(&format!(
            "{HEAD}detection:\n  k:\n    '|re': '[a-z]+'\n  condition: k\n"
        ));
        assert_eq!(prefilter(&set), "TRUE");
    }

    #[test]
    fn wildcards_and_quotes_are_escaped() {
        let set = rules(&format!(
            "{HEAD}detection:\n  sel:\n    resource: \"o'brien_*%\"\n  condition: sel\n"
        ));
        assert_eq!(prefilter(&set), "resource ILIKE 'o''brien\\_%\\%'");
    }
}
