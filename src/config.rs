//! Configuration: one TOML file, `TOOLTRAIL__SECTION__KEY` environment
//! overrides, and command-line flags on top.
//!
//! Each section is owned by the code that uses it; this module only layers the
//! sources and reports every bad key by its path. The example config
//! (`tooltrail.example.toml`) documents every key and is parsed by a test.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

use anyhow::Context as _;
use tooltrail_detect::DetectConfig;
use tooltrail_ingest::config::{DigestConfig, HttpConfig, IngestConfig, KafkaConfig, OtlpConfig};
use tooltrail_lake::Location;
use tooltrail_lake::compact::config::CompactionConfig;
use tooltrail_lake::retention::RetentionConfig;
use tooltrail_query::QueryConfig;

use crate::logging::LogConfig;
use crate::signing::SigningConfig;

/// The whole configuration file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Logging: format and filter.
    pub log: LogConfig,
    /// How records become lake files.
    pub ingest: IngestConfig,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The Kafka source; absent means HTTP ingest only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConfig>,
    /// OTLP input (`POST /v1/logs`, `/v1/traces`, Kafka `otlp_proto`) and
    /// how its attributes fill the event's fields.
    pub otlp: OtlpConfig,
    /// Detectors, their thresholds and windows.
    pub detect: DetectConfig,
    /// The SQL endpoint: tokens, limits, the Postgres wire listener, exports.
    pub query: QueryConfig,
    /// The key that signs export manifests and lake digests.
    pub signing: SigningConfig,
    /// The lake's signed digest chain.
    pub digest: DigestConfig,
    /// How long each table is kept; legal holds.
    pub retention: RetentionConfig,
    /// How `up` merges the small files of closed partitions.
    pub compaction: CompactionConfig,
}

/// The environment variable prefix for overrides: `TOOLTRAIL__LOG__FORMAT=json`.
pub const ENV_PREFIX: &str = "TOOLTRAIL__";

/// One bad key, by its dotted path, with what is wrong and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub path: String,
    pub problem: String,
    pub source: Option<String>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.problem)?;
        if let Some(source) = &self.source {
            write!(f, " (from {source})")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem{})",
            self.0.len(),
            plural(self.0.len())
        )?;
        for issue in &self.0 {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The layered sources: defaults, then the file (if any), then the environment,
/// then `overrides` (command-line flags, as `("section.key", value)` pairs).
pub fn figment(file: Option<&Path>, overrides: &[(&str, Value)]) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    for (key, value) in overrides {
        figment = figment.merge((*key, value.clone()));
    }
    figment
}

/// Loads and validates the configuration, reporting every bad key at once.
pub fn load(figment: &Figment) -> Result<Config, ConfigErrors> {
    let mut issues = Vec::new();
    let mut tree: Dict = match figment.extract::<Dict>() {
        Ok(tree) => tree,
        Err(e) => {
            // The file itself is unreadable or not TOML: nothing more to check.
            return Err(ConfigErrors(
                e.into_iter()
                    .map(|e| ConfigIssue {
                        path: e.path.join("."),
                        problem: e.kind.to_string(),
                        source: e.metadata.as_ref().map(describe_source),
                    })
                    .collect(),
            ));
        }
    };
    // Serde stops at the first error, so take out each offending key and try
    // again until what is left deserializes.
    for _ in 0..64 {
        let attempt = Figment::from(Serialized::defaults(&tree)).extract::<Config>();
        match attempt {
            Ok(config) => {
                // What deserialized is also checked, so one run names everything.
                issues.extend(config.validate());
                return if issues.is_empty() {
                    Ok(config)
                } else {
                    Err(ConfigErrors(issues))
                };
            }
            Err(errors) => {
                for e in errors {
                    let path = e.path.clone();
                    let dotted = path.join(".");
                    issues.push(ConfigIssue {
                        problem: e.kind.to_string(),
                        source: figment.find_metadata(&dotted).map(describe_source),
                        path: dotted,
                    });
                    if !remove_path(&mut tree, &path) {
                        return Err(ConfigErrors(issues));
                    }
                }
            }
        }
    }
    Err(ConfigErrors(issues))
}

fn describe_source(metadata: &figment::Metadata) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ => metadata.name.to_string(),
    }
}

/// Removes the key at `path`; false when there is nothing there to remove.
fn remove_path(tree: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => tree.remove(last).is_some(),
        [first, rest @ ..] => match tree.get_mut(first) {
            Some(Value::Dict(_, child)) => remove_path(child, rest),
            _ => false,
        },
    }
}

impl Config {
    /// The lake a command works on: its `--lake` flag, else `ingest.lake`.
    pub fn lake(&self, flag: Option<String>) -> anyhow::Result<Location> {
        let (text, from) = match (flag, &self.ingest.lake) {
            (Some(flag), _) => (flag, "--lake"),
            (None, Some(configured)) => (configured.clone(), "ingest.lake"),
            (None, None) => anyhow::bail!(
                "no lake: pass --lake (a directory or s3://bucket/prefix) or set ingest.lake"
            ),
        };
        Location::parse(&text).with_context(|| format!("the lake named by {from}"))
    }

    /// Checks rules that types alone cannot express.
    fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(problem) = self.log.validate() {
            issues.push(ConfigIssue {
                path: "log.filter".into(),
                problem,
                source: None,
            });
        }
        for (path, problem) in self
            .ingest
            .validate()
            .into_iter()
            .chain(self.http.validate())
            .chain(self.kafka.iter().flat_map(|k| k.validate()))
            .chain(self.otlp.validate())
        {
            issues.push(ConfigIssue {
                path,
                problem,
                source: None,
            });
        }
        if self.digest.interval < std::time::Duration::from_secs(1) {
            issues.push(ConfigIssue {
                path: "digest.interval".into(),
                problem: "must be at least 1s".into(),
                source: None,
            });
        }
        for (path, problem) in self
            .retention
            .validate()
            .into_iter()
            .chain(self.compaction.validate())
        {
            issues.push(ConfigIssue {
                path,
                problem,
                source: None,
            });
        }
        if let Err(errors) = self.detect.validate() {
            issues.extend(errors.into_iter().map(|e| ConfigIssue {
                path: format!("detect.{}", e.field),
                problem: e.problem,
                source: None,
            }));
        }
        if let Err(errors) = self.query.validate() {
            issues.extend(errors.into_iter().map(|e| ConfigIssue {
                path: format!("query.{}", e.field),
                problem: e.problem,
                source: None,
            }));
        }
        issues
    }
}

/// The detector's validated settings. [`load`] has already checked them, so
/// an error here means a config built some other way.
pub fn detect_settings(
    config: &tooltrail_detect::DetectConfig,
) -> anyhow::Result<tooltrail_detect::Settings> {
    let mut settings = config.validate().map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid detect config: {}", list.join("; "))
    })?;
    if let Some(dir) = &config.rules_dir {
        let source = tooltrail_detect::sigma::RuleSource::load(dir);
        crate::rules::log_loaded(&source.current().1);
        settings.rules = Some(std::sync::Arc::new(source));
    }
    Ok(settings)
}

/// Where to read the config file from: the `--config` flag, `TOOLTRAIL_CONFIG`,
/// or `./tooltrail.toml` when it exists.
pub fn resolve_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("TOOLTRAIL_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let local = PathBuf::from("tooltrail.toml");
            local.exists().then_some(local)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigErrors> {
        let figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml));
        load(&figment)
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../tooltrail.example.toml");
        load_str(text).expect("tooltrail.example.toml must stay valid");
    }

    #[test]
    fn the_example_config_shows_the_detection_defaults() {
        // Someone copying the example must get the defaults, not stale values.
        let text = include_str!("../tooltrail.example.toml");
        let example = load_str(text).expect("valid");
        assert_eq!(example.detect, DetectConfig::default());
    }

    #[test]
    fn the_example_config_shows_the_otlp_mapping_defaults() {
        let text = include_str!("../tooltrail.example.toml");
        let example = load_str(text).expect("valid");
        assert_eq!(example.otlp, OtlpConfig::default());
    }

    #[test]
    fn reports_every_bad_key_by_path() {
        let errors = load_str(
            r#"
            nonsense = 1
            [log]
            format = "xml"
            colour = true
            "#,
        )
        .unwrap_err();
        let mut paths: Vec<&str> = errors.0.iter().map(|i| i.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["log.colour", "log.format", "nonsense"], "{errors}");
        let format = errors.0.iter().find(|i| i.path == "log.format").unwrap();
        assert!(format.problem.contains("xml"), "{format}");
    }

    #[test]
    fn the_example_ingest_token_and_kafka_blocks_parse_when_uncommented() {
        let text = include_str!("../tooltrail.example.toml");
        let mut uncommented = String::new();
        let mut inside = false;
        for line in text.lines() {
            // The commented blocks under `[http]` and `[kafka]`.
            if line.starts_with("# [[http.ingest_tokens]]") || line.starts_with("# [kafka]") {
                inside = true;
            } else if !line.starts_with("# ") {
                inside = false;
            }
            let is_toml = |rest: &str| {
                rest.starts_with(['[', '"'])
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    })
            };
            match line.strip_prefix("# ") {
                Some(rest) if inside && is_toml(rest) => uncommented.push_str(rest),
                _ => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        let config = load_str(&uncommented).expect("the uncommented example is valid");
        assert_eq!(config.http.ingest_tokens[0].name, "gateway-acme");
        let kafka = config.kafka.expect("the kafka block");
        assert_eq!(kafka.tenants, Some(vec!["acme".into(), "globex".into()]));
        assert_eq!(
            kafka.encoding,
            tooltrail_ingest::config::KafkaEncoding::Json
        );
        assert!(
            kafka
                .properties
                .expose()
                .any(|(k, v)| k == "sasl.password" && v == "...")
        );
    }

    #[test]
    fn config_show_masks_every_credential() {
        let config = load_str(
            r#"
            [kafka]
            brokers = "b:9092"
            topic = "t"
            [kafka.properties]
            "sasl.password" = "canary-1"
            "sasl.jaas.config" = "canary-2"
            [[detect.delivery.destinations]]
            name = "siem"
            kind = "webhook"
            url = "https://siem.example.com/canary-3?canary-4"
            secret = "canary-5-long-enough"
            [[detect.delivery.destinations]]
            name = "slack"
            kind = "slack"
            url = "https://hooks.slack.com/services/canary-6"
            "#,
        )
        .expect("valid");
        let shown = toml::to_string_pretty(&config).expect("serializes");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(
            shown.contains("https://hooks.slack.com/<redacted>"),
            "{shown}"
        );
        assert!(!format!("{config:?}").contains("canary"));
    }

    #[test]
    fn the_old_ingest_token_list_is_named_with_the_new_form() {
        let errors = load_str("[http]\ningest_tokens = [\"s3cret\"]").unwrap_err();
        let text = errors.to_string();
        assert!(
            errors.0[0].path.starts_with("http.ingest_tokens"),
            "{errors}"
        );
        assert!(text.contains("[[http.ingest_tokens]]"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn a_zero_digest_interval_is_named() {
        let errors = load_str("[digest]\ninterval = \"0s\"").unwrap_err();
        assert_eq!(errors.0[0].path, "digest.interval", "{errors}");
    }

    #[test]
    fn a_bad_filter_is_named() {
        let errors = load_str("[log]\nfilter = \"info,=[\"").unwrap_err();
        assert_eq!(errors.0[0].path, "log.filter", "{errors}");
    }

    #[test]
    fn overrides_beat_the_file() {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[log]\nformat = \"text\""))
            .merge(("log.format", "json"));
        let config = load(&figment).unwrap();
        assert_eq!(config.log.format, crate::logging::LogFormat::Json);
    }
}
