//! Splitting a query string into statements with their tokens.

use super::*;

/// One statement of a query string: its text and its significant tokens with
/// their byte offsets in it.
pub(super) struct Statement<'a> {
    pub(super) sql: &'a str,
    pub(super) tokens: Vec<(Token, usize)>,
}

/// Splits a query string at its top-level semicolons, dropping empty
/// statements. A string the tokenizer rejects, or longer than the engine
/// accepts, is one opaque statement: the engine reports what is wrong.
pub(super) fn split(sql: &str, max_bytes: usize) -> Vec<Statement<'_>> {
    let opaque = || {
        vec![Statement {
            sql: sql.trim(),
            tokens: Vec::new(),
        }]
    };
    if sql.len() > max_bytes {
        return opaque();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return opaque();
    };
    let mut cursor = Cursor::new(sql);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut current: Vec<(Token, usize)> = Vec::new();
    let mut finish = |start: usize, end: usize, tokens: Vec<(Token, usize)>| {
        let text = &sql[start..end];
        let trimmed = text.trim_start();
        let base = start + (text.len() - trimmed.len());
        if !tokens.is_empty() {
            let tokens = tokens.into_iter().map(|(t, at)| (t, at - base)).collect();
            statements.push(Statement {
                sql: trimmed.trim_end(),
                tokens,
            });
        }
    };
    for token in tokens {
        let at = cursor.offset(token.span.start);
        match token.token {
            Token::Whitespace(_) | Token::EOF => {}
            Token::SemiColon => {
                finish(start, at, std::mem::take(&mut current));
                start = at + 1;
            }
            other => current.push((other, at)),
        }
    }
    finish(start, sql.len(), current);
    statements
}

/// Byte offsets of tokenizer locations (1-based lines and columns in
/// characters), visited in order.
struct Cursor<'a> {
    sql: &'a str,
    line: u64,
    column: u64,
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(sql: &'a str) -> Self {
        Cursor {
            sql,
            line: 1,
            column: 1,
            offset: 0,
        }
    }

    fn offset(&mut self, to: Location) -> usize {
        while (self.line, self.column) < (to.line, to.column) {
            let Some(c) = self.sql[self.offset..].chars().next() else {
                break;
            };
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
            self.offset += c.len_utf8();
        }
        self.offset
    }
}
