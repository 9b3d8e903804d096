//! The MCP log source's fields: the event contract's, by their contract
//! names, plus paths into the JSON-valued ones.

use tooltrail_schemas::{FIELDS, WireType};

/// Fields whose values are JSON objects a rule may reach into with a
/// dotted path (`arguments.query`, `attributes.region`).
pub const NESTED: &[&str] = &["arguments", "attributes"];

/// Whether `name` is a field of the log source: a contract field, or a
/// path into `arguments` or `attributes`.
pub fn known(name: &str) -> bool {
    FIELDS.iter().any(|f| f.name == name)
        || NESTED.iter().any(|n| {
            name.strip_prefix(n)
                .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1)
        })
}

/// The contract's plain text fields (all but `time`, which a rule sees as
/// text too but which is a timestamp in the lake).
pub fn text_fields() -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(|f| f.wire == WireType::String && f.name != "time")
        .map(|f| f.name)
}

/// Every field with the type a rule sees, for docs and error messages.
pub fn table() -> impl Iterator<Item = (&'static str, &'static str)> {
    FIELDS.iter().map(|f| {
        let kind = match f.wire {
            WireType::Integer => "integer",
            WireType::Number => "number",
            WireType::String => "string",
            WireType::StringArray => "list of strings (any element matches)",
            WireType::Object => "object (reach in with `arguments.<path>`)",
            WireType::StringMap => "map of strings (`attributes.<key>`)",
        };
        (f.name, kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_and_nested_paths_are_known() {
        for name in [
            "tool",
            "server",
            "decision",
            "status",
            "source_ip",
            "arguments.query.text",
            "attributes.region",
        ] {
            assert!(known(name), "{name}");
        }
        for name in [
            "Tool",
            "toolname",
            "arguments.",
            "CommandLine",
            "args.query",
        ] {
            assert!(!known(name), "{name}");
        }
    }

    /// The README's field table is this one.
    #[test]
    fn the_rules_readme_lists_every_field() {
        let readme = include_str!("../../../rules/README.md");
        for (name, _) in table() {
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "rules/README.md lacks `{name}`"
            );
        }
    }
}
