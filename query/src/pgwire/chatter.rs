//! Session chatter: `SET`, `SHOW`, transaction statements and a few
//! functions clients send on their own, answered on the connection.

use super::*;

/// Client parameters `SET` may change and `SHOW` reports: name, how it is
/// reported to the client when it changes, default. The values live in the
/// connection's metadata, where pgwire's text formats read `DateStyle`,
/// `IntervalStyle`, `bytea_output` and `extra_float_digits`; the others are
/// remembered for `SHOW` and otherwise have no effect (`statement_timeout`
/// included: `query.timeout` applies).
pub const PARAMETERS: [(&str, Option<&str>, &str); 11] = [
    ("application_name", Some("application_name"), ""),
    ("client_encoding", Some("client_encoding"), "UTF8"),
    ("datestyle", Some("DateStyle"), "ISO, YMD"),
    ("intervalstyle", Some("IntervalStyle"), "postgres"),
    ("timezone", Some("TimeZone"), "Etc/UTC"),
    (
        "standard_conforming_strings",
        Some("standard_conforming_strings"),
        "on",
    ),
    ("extra_float_digits", None, "1"),
    ("bytea_output", None, "hex"),
    ("search_path", None, "public"),
    ("client_min_messages", None, "notice"),
    ("statement_timeout", None, "0"),
];

/// What `SHOW` answers besides [`PARAMETERS`]: name, value.
pub(super) const FACTS: [(&str, &str); 6] = [
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("server_version", SERVER_VERSION),
    ("server_encoding", "UTF8"),
    ("integer_datetimes", "on"),
];

pub(super) fn reported_as(name: &str) -> Option<&'static str> {
    PARAMETERS.iter().find(|p| p.0 == name).and_then(|p| p.1)
}

pub(super) fn parameter_default(name: &str) -> String {
    let formats = FormatOptions::default();
    match name {
        "datestyle" => formats.date_style,
        "intervalstyle" => formats.interval_style,
        "extra_float_digits" => formats.extra_float_digits.to_string(),
        _ => PARAMETERS
            .iter()
            .find(|p| p.0 == name)
            .map_or("", |p| p.2)
            .to_owned(),
    }
}

/// The value `SHOW name` answers on this connection.
pub(super) fn show<C: ClientInfo>(client: &C, name: &str) -> String {
    if let Some((_, value)) = FACTS.iter().find(|f| f.0 == name) {
        return (*value).to_owned();
    }
    let metadata = client.metadata();
    metadata
        .get(name)
        .or_else(|| {
            metadata
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .cloned()
        .unwrap_or_else(|| parameter_default(name))
}

/// The value to store for `SET name = value`, or why it is refused.
pub(super) fn check_parameter(name: &str, value: &str) -> PgWireResult<String> {
    let refuse = |why: &str| {
        Err(error(
            "ERROR",
            "22023",
            format!("invalid value for parameter \"{name}\": \"{value}\"; {why}"),
        ))
    };
    let lower = value.to_ascii_lowercase();
    let one_of = |allowed: &[&str]| allowed.contains(&lower.as_str());
    match name {
        "client_encoding" if !one_of(&["utf8", "utf-8", "unicode"]) => {
            refuse("the server speaks UTF8 only")
        }
        "client_encoding" => Ok("UTF8".into()),
        "timezone" if !one_of(&["utc", "etc/utc", "gmt", "z", "uct", "local", "+00:00", "0"]) => {
            refuse("timestamps are in UTC: only UTC is supported")
        }
        "standard_conforming_strings" if !one_of(&["on", "true", "1"]) => {
            refuse("standard_conforming_strings is always on")
        }
        "extra_float_digits" if !value.parse::<i8>().is_ok_and(|d| (-15..=3).contains(&d)) => {
            refuse("it must be an integer from -15 to 3")
        }
        "bytea_output" if !one_of(&["hex", "escape"]) => refuse("it must be hex or escape"),
        "intervalstyle"
            if !one_of(&["postgres", "postgres_verbose", "sql_standard", "iso_8601"]) =>
        {
            refuse("it must be postgres, postgres_verbose, sql_standard or iso_8601")
        }
        "datestyle"
            if !lower.split(',').all(|part| {
                [
                    "iso",
                    "sql",
                    "postgres",
                    "german",
                    "dmy",
                    "mdy",
                    "ymd",
                    "euro",
                    "european",
                    "us",
                    "noneuropean",
                ]
                .contains(&part.trim())
            }) =>
        {
            refuse("it must be a style (ISO, SQL, Postgres, German) and an order (DMY, MDY, YMD)")
        }
        _ => Ok(value.to_owned()),
    }
}

/// Session chatter: statements clients send on their own, answered on the
/// connection rather than by the engine.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Chatter {
    /// `SET name = value`; `None` for `DEFAULT`.
    Set {
        name: &'static str,
        value: Option<String>,
    },
    /// `SET [SESSION CHARACTERISTICS AS] TRANSACTION …`
    SetTransaction,
    /// `BEGIN`, `START TRANSACTION`: the tag.
    Begin(&'static str),
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`: the tag.
    End(&'static str),
    Show {
        name: &'static str,
        column: String,
    },
    /// `SELECT version(), current_user …`: each function and its column.
    Functions(Vec<(Function, String)>),
    /// `COPY … TO STDOUT` or `FROM STDIN`: refused.
    Copy,
    /// `DEALLOCATE [PREPARE] name` (`None`: `ALL`), which drivers send to
    /// drop the statements they prepared.
    Deallocate(Option<String>),
}

pub(super) fn copy_refused() -> PgWireError {
    error(
        "ERROR",
        "42501",
        "COPY is not supported: this endpoint is read-only; export results over HTTP \
         (POST /v1/sql with format csv, arrow or parquet)"
            .into(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Function {
    Version,
    CurrentSchema,
    CurrentDatabase,
    CurrentUser,
}

impl Chatter {
    /// Recognises chatter from a statement's tokens; `None` for anything
    /// else, which goes to the engine.
    pub(super) fn classify(tokens: &[(Token, usize)]) -> Option<Chatter> {
        let tokens: Vec<&Token> = tokens.iter().map(|(t, _)| t).collect();
        let word = |i: usize| keyword(tokens.get(i).copied()?);
        let only = |from: usize, allowed: &[&str]| {
            (from..tokens.len()).all(|i| word(i).is_some_and(|w| allowed.contains(&w.as_str())))
        };
        match word(0)?.as_str() {
            "begin" => Some(Chatter::Begin("BEGIN")),
            "start" if word(1)? == "transaction" => Some(Chatter::Begin("START TRANSACTION")),
            "commit" | "end" if only(1, &["work", "transaction"]) => Some(Chatter::End("COMMIT")),
            "rollback" | "abort" if only(1, &["work", "transaction"]) => {
                Some(Chatter::End("ROLLBACK"))
            }
            "set" => Self::set(&tokens[1..]),
            "show" => {
                let words: Option<Vec<String>> = (1..tokens.len()).map(word).collect();
                let name = match words?.join(" ").as_str() {
                    "transaction isolation level" => "transaction_isolation",
                    other => PARAMETERS
                        .iter()
                        .map(|p| p.0)
                        .chain(FACTS.iter().map(|f| f.0))
                        .find(|n| *n == other)?,
                };
                Some(Chatter::Show {
                    name,
                    column: name.to_owned(),
                })
            }
            "select" => Self::functions(&tokens[1..]),
            "deallocate" => {
                let at = 1 + usize::from(word(1).as_deref() == Some("prepare"));
                match tokens.get(at..) {
                    Some([Token::Word(w)]) if word(at).as_deref() == Some("all") => {
                        Some(Chatter::Deallocate(None))
                    }
                    Some([Token::Word(w)]) => Some(Chatter::Deallocate(Some(w.value.clone()))),
                    _ => None,
                }
            }
            // The engine cannot parse these, and would say so obscurely.
            "copy"
                if (1..tokens.len())
                    .any(|i| matches!(word(i).as_deref(), Some("stdin" | "stdout"))) =>
            {
                Some(Chatter::Copy)
            }
            _ => None,
        }
    }

    fn set(tokens: &[&Token]) -> Option<Chatter> {
        let word = |i: usize| keyword(tokens.get(i).copied()?);
        let mut i = 0;
        if word(0).as_deref() == Some("session") && word(1).as_deref() == Some("characteristics") {
            return (word(2)? == "as" && word(3)? == "transaction")
                .then_some(Chatter::SetTransaction);
        }
        if matches!(word(0).as_deref(), Some("session" | "local")) {
            i = 1;
        }
        let name = match (word(i)?.as_str(), word(i + 1).as_deref()) {
            ("transaction", _) => return Some(Chatter::SetTransaction),
            ("time", Some("zone")) => {
                i += 2;
                "timezone".to_owned()
            }
            (name, _) => {
                i += 1;
                if !matches!(tokens.get(i), Some(Token::Eq)) && word(i).as_deref() != Some("to") {
                    return None;
                }
                i += 1;
                name.to_owned()
            }
        };
        let name = PARAMETERS.iter().find(|p| p.0 == name)?.0;
        let mut value = String::new();
        for token in &tokens[i..] {
            match token {
                Token::SingleQuotedString(s) => value.push_str(s),
                Token::Number(n, _) => value.push_str(n),
                Token::Minus => value.push('-'),
                Token::Plus => value.push('+'),
                Token::Comma => value.push_str(", "),
                Token::Word(w) => value.push_str(&w.value),
                _ => return None,
            }
        }
        if value.is_empty() {
            return None;
        }
        let reset = tokens.len() == i + 1 && word(i).as_deref() == Some("default");
        Some(Chatter::Set {
            name,
            value: (!reset).then_some(value),
        })
    }

    /// `SELECT f() [[AS] alias], …` over the fixed functions, nothing else.
    fn functions(tokens: &[&Token]) -> Option<Chatter> {
        let mut functions = Vec::new();
        let mut i = 0;
        loop {
            let name = keyword(tokens.get(i)?)?;
            i += 1;
            let parens = matches!(tokens.get(i..i + 2), Some([Token::LParen, Token::RParen]));
            if parens {
                i += 2;
            }
            let function = match (name.as_str(), parens) {
                ("version", true) => Function::Version,
                ("current_schema", _) => Function::CurrentSchema,
                ("current_database", true) | ("current_catalog", false) => {
                    Function::CurrentDatabase
                }
                ("current_user" | "session_user", false) | ("user", false) => Function::CurrentUser,
                _ => return None,
            };
            let mut column = name;
            if tokens.get(i).and_then(|t| keyword(t)).as_deref() == Some("as") {
                i += 1;
            }
            if let Some(Token::Word(alias)) = tokens.get(i) {
                column = alias.value.clone();
                i += 1;
            }
            functions.push((function, column));
            match tokens.get(i) {
                None => return Some(Chatter::Functions(functions)),
                Some(Token::Comma) => i += 1,
                Some(_) => return None,
            }
        }
    }

    /// The columns this chatter's answer has (none for a tag).
    pub(super) fn columns(&self) -> Vec<String> {
        match self {
            Chatter::Show { column, .. } => vec![column.clone()],
            Chatter::Functions(functions) => functions.iter().map(|(_, c)| c.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// An unquoted word, lowercased.
pub(super) fn keyword(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }
}
