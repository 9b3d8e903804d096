//! Small `arguments` objects, as a gateway logs them (bodies summarised as
//! lengths, never logged verbatim).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::call::flags;
use crate::catalog::{Access, Args, Tool, WORDS, last_segment};
use crate::population::{User, World};
use crate::rng::SplitMix;

/// Mail domains outside every tenant.
const EXTERNAL_DOMAINS: &[&str] = &[
    "protonmail.com",
    "gmail.com",
    "outlook.com",
    "tutanota.com",
    "mail.ru",
    "yandex.com",
];

enum Value {
    Str(String),
    Static(&'static str),
    Int(i64),
    Bool(bool),
    List(String),
}

/// An ordered list of fields that serializes as a JSON object.
struct Object(Vec<(&'static str, Value)>);

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match v {
                Value::Str(s) => map.serialize_entry(k, s)?,
                Value::Static(s) => map.serialize_entry(k, s)?,
                Value::Int(i) => map.serialize_entry(k, i)?,
                Value::Bool(b) => map.serialize_entry(k, b)?,
                Value::List(s) => map.serialize_entry(k, &[s])?,
            }
        }
        map.end()
    }
}

impl Object {
    fn raw(self) -> Box<RawValue> {
        serde_json::value::to_raw_value(&self).expect("an object of strings and numbers serializes")
    }
}

fn pick<T: Copy>(d: &mut SplitMix, items: &[T]) -> T {
    items[d.below(items.len() as u64) as usize]
}

fn word(d: &mut SplitMix) -> &'static str {
    pick(d, WORDS)
}

/// A colleague's address in the caller's tenant.
fn colleague(world: &World, user: &User, d: &mut SplitMix) -> String {
    let tenant = world.tenant_of(user);
    let other = tenant.users[d.below(tenant.users.len() as u64) as usize];
    format!("{}@{}.example", world.users[other as usize].id, tenant.id)
}

fn outsider(d: &mut SplitMix) -> String {
    let domain = pick(d, EXTERNAL_DOMAINS);
    format!(
        "{}.{}{}@{domain}",
        pick(d, &["inbox", "drop", "archive", "notes", "backup"]),
        word(d).replace(' ', ""),
        d.below(9000) + 1000
    )
}

/// The `arguments` of a `tools/call`.
pub(super) fn tool_args(
    world: &World,
    user: &User,
    tool: &Tool,
    resource: Option<&str>,
    call_flags: u8,
    d: &mut SplitMix,
) -> Box<RawValue> {
    let external = call_flags & flags::EXTERNAL != 0;
    let bulk = call_flags & flags::BULK != 0;
    let id = || {
        Value::Str(resource.map_or_else(|| "default".to_owned(), |r| last_segment(r).to_owned()))
    };
    let chars = |d: &mut SplitMix| Value::Int(40 + d.below(1800) as i64);
    let limit = |d: &mut SplitMix| {
        Value::Int(if bulk {
            10_000
        } else {
            pick(d, &[10, 20, 25, 50, 100])
        })
    };
    let fields = match tool.args {
        Args::Search => vec![("query", Value::Static(word(d))), ("limit", limit(d))],
        Args::List => vec![("limit", limit(d))],
        Args::Ref => vec![("id", id())],
        Args::Create => {
            vec![
                ("title", Value::Str(format!("{} {}", word(d), word(d)))),
                ("body_chars", chars(d)),
            ]
        }
        Args::Comment => vec![("id", id()), ("body_chars", chars(d))],
        Args::Message => vec![("channel", id()), ("text_chars", chars(d))],
        Args::Email => {
            let to = if external {
                outsider(d)
            } else {
                colleague(world, user, d)
            };
            vec![
                ("to", Value::List(to)),
                ("subject", Value::Static(word(d))),
                ("body_chars", chars(d)),
            ]
        }
        Args::Share => {
            let with = if external {
                if d.below(2) == 0 {
                    "anyone".to_owned()
                } else {
                    outsider(d)
                }
            } else {
                colleague(world, user, d)
            };
            vec![
                ("id", id()),
                (
                    "role",
                    Value::Static(pick(d, &["reader", "commenter", "writer"])),
                ),
                ("with", Value::Str(with)),
            ]
        }
        Args::Export => vec![
            (
                "target",
                if resource.is_some() {
                    id()
                } else {
                    Value::Static("all")
                },
            ),
            ("format", Value::Static(pick(d, &["csv", "json", "xlsx"]))),
        ],
        Args::Sql => {
            let table = resource.map_or("events", last_segment);
            let sql = if bulk {
                format!("select * from {table}")
            } else if tool.access != Access::Read {
                let id = 1 + d.below(90_000);
                format!("update {table} set status = 'archived' where id = {id}")
            } else {
                let days = pick(d, &[1, 7, 30]);
                let rows = pick(d, &[10, 50, 100, 500]);
                format!(
                    "select id, status, created_at from {table} where created_at > now() - interval '{days} days' limit {rows}"
                )
            };
            vec![("sql", Value::Str(sql))]
        }
        Args::Metrics => vec![
            (
                "query",
                Value::Str(format!(
                    "avg:{}{{service:{}}}",
                    pick(
                        d,
                        &["http.latency", "http.errors", "cpu.usage", "queue.depth"]
                    ),
                    pick(d, &["api", "web", "worker", "billing"])
                )),
            ),
            (
                "from",
                Value::Static(pick(d, &["-15m", "-1h", "-4h", "-1d"])),
            ),
        ],
        Args::Scale => vec![
            ("id", id()),
            ("replicas", Value::Int(1 + d.below(12) as i64)),
        ],
        Args::Forward => vec![
            ("forward_to", Value::Str(outsider(d))),
            ("match", Value::Static("from:*")),
        ],
        Args::Report => vec![
            (
                "period",
                Value::Static(pick(d, &["2026-08", "2026-09", "2026-10", "2026-Q3"])),
            ),
            ("format", Value::Static(pick(d, &["pdf", "csv"]))),
        ],
        Args::Exec => vec![
            ("id", id()),
            (
                "command",
                Value::Static(pick(d, &["env", "ps aux", "cat /etc/hosts"])),
            ),
        ],
    };
    let mut fields = fields;
    if external && !matches!(tool.args, Args::Email | Args::Share | Args::Forward) {
        fields.push(("public", Value::Bool(true)));
    }
    Object(fields).raw()
}

/// The `arguments` of a `prompts/get`.
pub(super) fn prompt_args(d: &mut SplitMix) -> Box<RawValue> {
    Object(vec![("topic", Value::Static(word(d)))]).raw()
}
