//! Sigma rules over MCP tool calls: detection as code.
//!
//! The log source is `{product: mcp, category: tool_call}`; its fields are
//! the event contract's ([`fields::FIELDS`]), and `arguments.<path>` reaches
//! into a call's arguments. Rules are evaluated by `rsigma-eval`:
//!
//! - [`RuleSet`]: the rules of a directory, each checked on its own; a bad
//!   rule is a [`RuleError`] naming its file, line and reason, and the
//!   others load.
//! - [`RuleSource`]: the rule set a running detector uses, swapped whole on
//!   a reload.
//! - [`SigmaDetector`]: the rules in the stream, inside [`crate::Engine`]:
//!   matches become alerts of `sigma:<rule id>`, severity from `level`,
//!   suppressed per user and rule; correlations (`event_count`,
//!   `value_count`, `temporal`, …) count one user's events by event time.
//! - [`McpEvent`]: a decoded event as rsigma sees it, without JSON.
//! - [`lint`], [`exemplars`] and [`hunt`]: `tooltrail rules lint`, `test`
//!   and `hunt`.

mod detector;
mod event;
pub mod exemplars;
pub mod fields;
pub mod hunt;
pub mod lint;
mod load;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

pub use detector::SigmaDetector;
pub use event::McpEvent;
pub use load::{CATEGORY, PRODUCT, RuleError, RuleInfo, RuleKind, RuleSet, USER_KEY, severity};

/// The rules a running detector uses, and where they come from.
#[derive(Debug)]
pub struct RuleSource {
    dir: Option<PathBuf>,
    current: ArcSwap<RuleSet>,
    generation: AtomicU64,
}

impl RuleSource {
    /// The rules of `dir`, reloadable.
    pub fn load(dir: &Path) -> Self {
        RuleSource {
            dir: Some(dir.to_path_buf()),
            current: ArcSwap::from_pointee(RuleSet::load_dir(dir)),
            generation: AtomicU64::new(1),
        }
    }

    /// A rule set that never changes.
    pub fn fixed(rules: RuleSet) -> Self {
        RuleSource {
            dir: None,
            current: ArcSwap::from_pointee(rules),
            generation: AtomicU64::new(1),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Reads the directory again and swaps the new set in whole: every
    /// detector picks it up at its next event. Returns the new set.
    pub fn reload(&self) -> Arc<RuleSet> {
        let Some(dir) = &self.dir else {
            return self.current.load_full();
        };
        let rules = Arc::new(RuleSet::load_dir(dir));
        self.current.store(rules.clone());
        self.generation.fetch_add(1, Ordering::Release);
        rules
    }

    /// Bumped by every reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current set, with the generation it is at least as new as.
    pub fn current(&self) -> (u64, Arc<RuleSet>) {
        let generation = self.generation();
        (generation, self.current.load_full())
    }
}
