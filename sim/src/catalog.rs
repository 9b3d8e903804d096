//! Static knowledge of the simulated world: MCP servers and their tools,
//! resource kinds and their URIs, peer roles, clients, names.
//!
//! Everything here is plain data; the population draws from it.

mod clients;
mod names;
mod resources;
mod roles;
mod servers;

pub(crate) use clients::{CLIENTS, ClientClass, pick_client};
pub(crate) use names::{FIRST_NAMES, LAST_NAMES, SERVICE_NAMES, TENANT_NAMES, WORDS};
pub(crate) use resources::{Kind, last_segment};
pub(crate) use roles::{ADOPTIONS, ROLES, Role};
pub(crate) use servers::SERVERS;

/// The access level a tool needs, and a user's grant on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    Read = 0,
    Write = 1,
    Admin = 2,
}

/// How a tool's `arguments` object looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Args {
    /// `{"query": ..., "limit": n}`
    Search,
    /// `{"limit": n}` and a filter.
    List,
    /// `{"id": <last segment of the resource>}`
    Ref,
    /// `{"title": ..., "body_chars": n}`
    Create,
    /// `{"id": ..., "body_chars": n}`
    Comment,
    /// `{"channel": ..., "text_chars": n}`
    Message,
    /// `{"to": [...], "subject": ..., "body_chars": n}`
    Email,
    /// `{"id": ..., "role": ..., "with": ...}`
    Share,
    /// `{"format": "csv", "target": ...}`
    Export,
    /// `{"sql": ...}`
    Sql,
    /// `{"query": ..., "from": "-1h"}`
    Metrics,
    /// `{"id": ..., "replicas": n}`
    Scale,
    /// `{"forward_to": ..., "match": ...}`
    Forward,
    /// `{"period": ..., "format": ...}`
    Report,
    /// `{"command": ...}`
    Exec,
}

/// One MCP tool.
#[derive(Debug)]
pub(crate) struct Tool {
    pub name: &'static str,
    pub access: Access,
    /// The resource kind the tool acts on, if it names one.
    pub kind: Option<Kind>,
    pub args: Args,
    /// Baseline popularity among users who have the server.
    pub popularity: f32,
    /// Destructive, bulk or outward-facing: `delete_*`, `export_*`, `send_email`...
    pub sensitive: bool,
    /// Sends data outside the tenant (email, public share, gist, forwarding).
    pub egress: bool,
}

/// One MCP server, its scopes and tools.
#[derive(Debug)]
pub(crate) struct Server {
    pub name: &'static str,
    /// Scope names for read, write and admin access.
    pub scopes: [&'static str; 3],
    /// Median latency of a successful call, milliseconds.
    pub latency_ms: f64,
    pub tools: &'static [Tool],
    /// Resource kinds readable with `resources/read`.
    pub kinds: &'static [Kind],
    pub prompts: &'static [&'static str],
}

/// A server, by index into [`SERVERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServerId(pub u8);

impl ServerId {
    pub(crate) fn get(self) -> &'static Server {
        &SERVERS[usize::from(self.0)]
    }

    pub(crate) fn by_name(name: &str) -> Option<ServerId> {
        SERVERS
            .iter()
            .position(|s| s.name == name)
            .map(|i| ServerId(i as u8))
    }

    pub(crate) fn all() -> impl Iterator<Item = ServerId> {
        (0..SERVERS.len()).map(|i| ServerId(i as u8))
    }

    pub(crate) fn tools(self) -> impl Iterator<Item = ToolId> {
        (0..self.get().tools.len()).map(move |t| ToolId {
            server: self,
            index: t as u8,
        })
    }
}

/// A tool, by server and index into its server's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ToolId {
    pub server: ServerId,
    pub index: u8,
}

impl ToolId {
    pub(crate) fn get(self) -> &'static Tool {
        &self.server.get().tools[usize::from(self.index)]
    }

    pub(crate) fn by_name(server: &str, tool: &str) -> Option<ToolId> {
        let server = ServerId::by_name(server)?;
        server.tools().find(|t| t.get().name == tool)
    }

    /// Every tool of every server.
    pub(crate) fn all() -> impl Iterator<Item = ToolId> {
        ServerId::all().flat_map(ServerId::tools)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_and_adoption_names_resolve_to_catalog_entries() {
        for role in ROLES {
            for (server, _, _, _) in role.servers {
                assert!(
                    ServerId::by_name(server).is_some(),
                    "{}: {server}",
                    role.name
                );
            }
            for (server, tool) in role.habitual_sensitive {
                assert!(
                    ToolId::by_name(server, tool).is_some(),
                    "{}: {tool}",
                    role.name
                );
            }
        }
        for adoption in ADOPTIONS {
            assert!(ServerId::by_name(adoption).is_some(), "{adoption}");
        }
    }

    #[test]
    fn resource_kinds_belong_to_a_server_that_lists_them() {
        for tool in ToolId::all() {
            if let Some(kind) = tool.get().kind {
                assert!(
                    tool.server.get().kinds.contains(&kind),
                    "{}",
                    tool.get().name
                );
            }
        }
    }

    #[test]
    fn catalog_fits_in_compact_indices() {
        assert!(SERVERS.len() < usize::from(u8::MAX));
        assert!(SERVERS.iter().all(|s| s.tools.len() < usize::from(u8::MAX)));
        assert!(CLIENTS.len() < usize::from(u8::MAX));
    }

    #[test]
    fn sensitive_tools_follow_naming_conventions_or_are_marked_egress() {
        for tool in ToolId::all().map(ToolId::get) {
            let named = ["delete_", "export_", "drop_", "bulk_"]
                .iter()
                .any(|p| tool.name.starts_with(p));
            if named {
                assert!(tool.sensitive, "{} should be sensitive", tool.name);
            }
            if tool.egress {
                assert!(tool.sensitive, "{} is egress so sensitive", tool.name);
            }
        }
    }
}
