//! MCP clients (`client_id`) and their user agents, oldest version first.

use rand::Rng;

use crate::rng::pick_weighted;

/// Who typically runs a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientClass {
    /// Desktop and IDE clients a person drives.
    Human,
    /// Headless agent runtimes acting for a person.
    Agent,
    /// Automation running as a service account.
    Service,
    /// Scripts and tools seen when credentials are abused.
    Attacker,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub id: &'static str,
    pub class: ClientClass,
    pub weight: f32,
    pub user_agents: &'static [&'static str],
}

const fn client(
    id: &'static str,
    class: ClientClass,
    weight: f32,
    user_agents: &'static [&'static str],
) -> Client {
    Client {
        id,
        class,
        weight,
        user_agents,
    }
}

use ClientClass::*;

pub(crate) static CLIENTS: &[Client] = &[
    client(
        "claude-desktop",
        Human,
        30.0,
        &[
            "Claude/0.13.2 (Macintosh; macOS 15.5)",
            "Claude/0.14.0 (Macintosh; macOS 15.6)",
            "Claude/0.14.3 (Windows NT 10.0; Win64; x64)",
        ],
    ),
    client(
        "cursor",
        Human,
        20.0,
        &[
            "Cursor/1.6.42 (darwin arm64)",
            "Cursor/1.7.11 (darwin arm64)",
            "Cursor/1.7.11 (linux x64)",
        ],
    ),
    client(
        "claude-code",
        Human,
        15.0,
        &[
            "claude-code/2.0.8 (node 22.11.0; darwin)",
            "claude-code/2.0.14 (node 22.12.0; linux)",
        ],
    ),
    client(
        "vscode-copilot",
        Human,
        12.0,
        &[
            "vscode/1.104.2 copilot-chat/0.31.0",
            "vscode/1.105.0 copilot-chat/0.32.1",
        ],
    ),
    client(
        "chatgpt-connector",
        Human,
        10.0,
        &["ChatGPT-MCP/1.0 (+https://openai.com)"],
    ),
    client("windsurf", Human, 5.0, &["Windsurf/1.12.4 (darwin arm64)"]),
    client(
        "custom-agent",
        Agent,
        50.0,
        &["acme-agent-runtime/0.9.1 python-httpx/0.28.1"],
    ),
    client(
        "langgraph-agent",
        Agent,
        30.0,
        &["langgraph/0.6.7 mcp-python/1.15.0"],
    ),
    client(
        "openai-agents-sdk",
        Agent,
        20.0,
        &["openai-agents/0.3.3 mcp-python/1.14.1"],
    ),
    client(
        "github-actions",
        Service,
        40.0,
        &["GitHub-Actions/2.328.0 mcp-client/0.4.2"],
    ),
    client(
        "airflow",
        Service,
        30.0,
        &["apache-airflow/3.0.6 mcp-python/1.15.0"],
    ),
    client("n8n", Service, 30.0, &["n8n/1.112.0 (mcp-client-tool)"]),
    client(
        "python-mcp-client",
        Attacker,
        40.0,
        &["python-httpx/0.27.2", "mcp-python/1.9.4"],
    ),
    client(
        "mcp-inspector",
        Attacker,
        25.0,
        &["node/20.19.2 mcp-inspector/0.16.8"],
    ),
    client("curl", Attacker, 20.0, &["curl/8.5.0", "curl/7.88.1"]),
    client("go-mcp", Attacker, 15.0, &["Go-http-client/1.1"]),
];

/// A client index of the given class, drawn by weight.
pub(crate) fn pick_client<R: Rng>(rng: &mut R, class: ClientClass) -> u8 {
    let candidates: Vec<usize> = (0..CLIENTS.len())
        .filter(|&i| CLIENTS[i].class == class)
        .collect();
    let weights: Vec<f32> = candidates.iter().map(|&i| CLIENTS[i].weight).collect();
    candidates[pick_weighted(rng, &weights)] as u8
}
