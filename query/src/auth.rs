//! Who is asking: bearer tokens from `[query]`, kept only as SHA-256 hashes
//! and compared in constant time, mapped to a role and a set of tenants.
//!
//! [`backoff`]: failed logins per source address, and the refusals that
//! follow, on the Postgres wire and the HTTP API; [`peer`]: the HTTP layer that
//! tells [`crate::http::principal`] who is calling; [`session`]: the
//! console's sign-in sessions and their CSRF check.

pub mod backoff;
pub mod peer;
pub mod session;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TokenConfig;

/// What a principal may read. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// SQL on `events` and `alerts`.
    Analyst,
    /// Also `quarantine`, and exports.
    Auditor,
    /// Also `query_audit`.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        })
    }
}

/// The tenants whose rows a principal sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    All,
    Only(BTreeSet<String>),
}

impl Tenants {
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(tenant),
        }
    }

    /// As recorded in the query audit: `["*"]` or the names.
    pub fn names(&self) -> Vec<String> {
        match self {
            Tenants::All => vec!["*".into()],
            Tenants::Only(set) => set.iter().cloned().collect(),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub tenants: Tenants,
}

impl Principal {
    /// The operator at the console (`tooltrail sql`): every table, every tenant.
    pub fn local_operator() -> Principal {
        Principal {
            name: "local-operator".into(),
            role: Role::Admin,
            tenants: Tenants::All,
        }
    }
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    tokens: Vec<([u8; 32], Principal)>,
}

impl TokenStore {
    /// From validated configuration (see [`crate::QueryConfig::validate`]).
    pub fn new(tokens: &[TokenConfig]) -> TokenStore {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(&t.sha256, &mut hash).ok()?;
                let tenants = if t.tenants.iter().any(|x| x == "*") {
                    Tenants::All
                } else {
                    Tenants::Only(t.tenants.iter().cloned().collect())
                };
                Some((
                    hash,
                    Principal {
                        name: t.name.clone(),
                        role: t.role,
                        tenants,
                    },
                ))
            })
            .collect();
        TokenStore { tokens }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The principal holding `token`, if any. Every configured hash is
    /// compared, in constant time, whichever matches.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (hash, principal) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// The hash to put in `[[query.tokens]]` for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TokenStore {
        TokenStore::new(&[
            TokenConfig {
                name: "ana".into(),
                sha256: token_hash("secret-a"),
                role: Role::Analyst,
                tenants: vec!["acme".into()],
            },
            TokenConfig {
                name: "root".into(),
                sha256: token_hash("secret-r"),
                role: Role::Admin,
                tenants: vec!["*".into()],
            },
        ])
    }

    #[test]
    fn a_token_maps_to_its_principal_and_nothing_else_does() {
        let store = store();
        let ana = store.authenticate("secret-a").unwrap();
        assert_eq!((ana.name.as_str(), ana.role), ("ana", Role::Analyst));
        assert!(ana.tenants.allows("acme") && !ana.tenants.allows("globex"));
        assert_eq!(
            store.authenticate("secret-r").unwrap().tenants,
            Tenants::All
        );
        for wrong in [
            "",
            "secret-",
            "secret-a ",
            "SECRET-A",
            &token_hash("secret-a"),
        ] {
            assert!(
                store.authenticate(wrong).is_none(),
                "{wrong:?} was accepted"
            );
        }
    }

    #[test]
    fn roles_are_ordered_by_what_they_may_read() {
        assert!(Role::Analyst < Role::Auditor && Role::Auditor < Role::Admin);
    }
}
