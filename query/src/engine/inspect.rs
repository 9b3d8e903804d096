//! What the engine checks on a query's text and syntax tree before
//! DataFusion plans it: the statement kind (read-only), the relations it
//! names (no server settings), and how deeply its expressions nest.
//!
//! DataFusion's planner, optimizer and expression evaluation recurse once per
//! level of an expression (`a + a + …` is a tree as deep as it has terms),
//! and `Expr::clone` inside the planner overflows a 2 MiB worker stack at
//! about 2,000 terms. sqlparser's recursion limit counts only nested
//! parentheses. So the depth is measured here, twice:
//!
//! 1. [`check_tokens`], on the token stream before parsing: a cheap upper
//!    estimate, refused past [`TOKEN_FACTOR`] times the limit, so that a
//!    million-term query never becomes a syntax tree (building and dropping
//!    one recurses too);
//! 2. [`check_statement`], on the parsed tree: the exact depth, refused past
//!    `query.max_expr_depth`.
//!
//! Everything below the limit is planned and run on the query runtime's
//! threads, whose stacks ([`super::runtime::STACK_BYTES`]) take it.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, ObjectName, Query, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::QueryError;

/// The token estimate may exceed the limit by this factor before the text is
/// refused unparsed: it counts e.g. both the `=` and the `AND` of `a = 1 AND
/// b = 2`, which nest about one level per pair.
pub const TOKEN_FACTOR: usize = 4;

/// Relations no principal may read: DataFusion's settings name the server's
/// directories.
const SETTINGS_RELATIONS: [&str; 1] = ["df_settings"];

/// Refuses `sql` when the expressions its tokens could build nest deeper
/// than [`TOKEN_FACTOR`] × `max_depth`. Text that does not tokenize is left
/// to the parser, which reports it properly.
pub fn check_tokens(sql: &str, dialect: &dyn Dialect, max_depth: usize) -> Result<(), QueryError> {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize() else {
        return Ok(());
    };
    let estimate = estimate_depth(&tokens);
    if estimate > max_depth.saturating_mul(TOKEN_FACTOR) {
        return Err(QueryError::TooComplex(format!(
            "the query's expressions nest about {estimate} levels deep (counted on its tokens, unparsed); the limit is {max_depth} (query.max_expr_depth): split the expression or use IN (…) for long lists of alternatives"
        )));
    }
    Ok(())
}

/// An upper estimate of the expression depth `tokens` parse into. Each
/// bracket (`(`, `[`, `{`, `CASE … END`) opens a level; inside one, every
/// operator adds a level to the expression it is part of, until a comma or a
/// clause keyword (`WHERE`, `WHEN`, …) starts a sibling expression. Set
/// operators (`UNION`) nest the queries they join and are never reset.
fn estimate_depth(tokens: &[Token]) -> usize {
    #[derive(Clone, Copy)]
    struct Level {
        base: usize,
        ops: usize,
        sets: usize,
        case: bool,
    }
    impl Level {
        fn depth(&self) -> usize {
            self.base + self.ops + self.sets
        }
    }
    let mut stack = vec![Level {
        base: 0,
        ops: 0,
        sets: 0,
        case: false,
    }];
    let mut deepest = 0;
    for token in tokens {
        let nested = stack.len() > 1;
        let top = stack
            .last_mut()
            .expect("the outermost level is never popped");
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                let base = top.depth() + 1;
                stack.push(Level {
                    base,
                    ops: 0,
                    sets: 0,
                    case: false,
                });
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if stack.len() > 1 {
                    stack.pop();
                }
            }
            Token::Comma | Token::SemiColon => top.ops = 0,
            Token::Word(word) if word.quote_style.is_none() => match word.keyword {
                Keyword::CASE => {
                    let base = top.depth() + 1;
                    stack.push(Level {
                        base,
                        ops: 0,
                        sets: 0,
                        case: true,
                    });
                }
                Keyword::END if top.case && nested => {
                    stack.pop();
                }
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::RLIKE
                | Keyword::REGEXP
                | Keyword::AT
                | Keyword::COLLATE
                | Keyword::DIV => top.ops += 1,
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS => {
                    top.sets += 1;
                    top.ops = 0;
                }
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::ON
                | Keyword::USING
                | Keyword::JOIN
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE => top.ops = 0,
                _ => {}
            },
            Token::Word(_)
            | Token::Number(..)
            | Token::Whitespace(_)
            | Token::Period
            | Token::EOF
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_) => {}
            // Every other token is an operator of some kind.
            _ => top.ops += 1,
        }
        let depth = stack.last().map_or(0, Level::depth);
        deepest = deepest.max(depth);
    }
    deepest
}

/// Only queries (and `EXPLAIN` of one, without `ANALYZE` or `VERBOSE`, whose
/// row counts would describe rows the principal may not see), reading no
/// server settings, whose expressions nest at most `max_depth` deep.
pub fn check_statement(statement: &DfStatement, max_depth: usize) -> Result<(), QueryError> {
    let sql = read_only(statement)?;
    // The tree is at most `TOKEN_FACTOR` times the limit deep (checked on
    // its tokens), so it is measured whole, for the error to name its depth.
    let mut inspect = Inspect {
        depth: 0,
        deepest: 0,
    };
    if let ControlFlow::Break(Refusal::Settings(name)) = sql.visit(&mut inspect) {
        return Err(QueryError::Forbidden(format!(
            "{name} is not readable: the server's settings are not part of the SQL API"
        )));
    }
    let deepest = inspect.deepest;
    if deepest > max_depth {
        return Err(QueryError::TooComplex(format!(
            "the query's expressions nest {deepest} levels deep; the limit is {max_depth} (query.max_expr_depth): split the expression or use IN (…) for long lists of alternatives"
        )));
    }
    Ok(())
}

/// The expression depth of `statement`, measured as [`check_statement`] does.
#[cfg(test)]
fn depth(statement: &DfStatement) -> usize {
    let Ok(sql) = read_only(statement) else {
        return 0;
    };
    let mut inspect = Inspect {
        depth: 0,
        deepest: 0,
    };
    let _ = sql.visit(&mut inspect);
    inspect.deepest
}

/// The SQL statement inside `statement` when it is a read-only kind.
fn read_only(statement: &DfStatement) -> Result<&Statement, QueryError> {
    let refused = || {
        QueryError::ReadOnly(
            "only SELECT, WITH, VALUES, SHOW and EXPLAIN queries are allowed: this endpoint is read-only".into(),
        )
    };
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) | Statement::ShowTables { .. } | Statement::ShowColumns { .. } => {
                Ok(s)
            }
            _ => Err(refused()),
        },
        DfStatement::Explain(explain) => {
            if explain.options.analyze || explain.options.verbose {
                return Err(QueryError::ReadOnly(
                    "EXPLAIN ANALYZE and EXPLAIN VERBOSE are not allowed: their row counts describe rows outside your tenants; use plain EXPLAIN".into(),
                ));
            }
            read_only(&explain.statement)
        }
        _ => Err(refused()),
    }
}

enum Refusal {
    Settings(String),
}

struct Inspect {
    depth: usize,
    deepest: usize,
}

impl Inspect {
    fn enter(&mut self) -> ControlFlow<Refusal> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<Refusal> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

impl Visitor for Inspect {
    type Break = Refusal;

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.enter()
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.leave()
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Refusal> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Refusal> {
        self.leave()
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Refusal> {
        let last = relation
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_ascii_lowercase());
        match last {
            Some(name) if SETTINGS_RELATIONS.contains(&name.as_str()) => {
                ControlFlow::Break(Refusal::Settings(relation.to_string()))
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn parse(sql: &str) -> DfStatement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    fn chain(op: &str, n: usize) -> String {
        let terms = vec!["a"; n].join(&format!(" {op} "));
        format!("SELECT {terms} FROM t")
    }

    fn tokens(sql: &str) -> usize {
        estimate_depth(&Tokenizer::new(&GenericDialect {}, sql).tokenize().unwrap())
    }

    #[test]
    fn a_chain_is_as_deep_as_it_has_operators() {
        for op in ["+", "OR", "AND", "||"] {
            let sql = chain(op, 300);
            let depth = depth(&parse(&sql));
            assert!((299..=302).contains(&depth), "{op}: {depth}");
            let estimate = tokens(&sql);
            assert!(estimate + 2 >= depth, "{op}: {estimate} < {depth}");
            assert!(estimate <= 2 * depth, "{op}: {estimate}");
        }
    }

    #[test]
    fn nested_case_is_measured_on_tokens_and_tree() {
        let mut sql = "1".to_string();
        for _ in 0..40 {
            sql = format!("CASE WHEN a > 1 THEN {sql} ELSE 0 END");
        }
        let sql = format!("SELECT {sql} FROM t");
        assert!(depth(&parse(&sql)) >= 40);
        assert!(tokens(&sql) >= 40);
    }

    #[test]
    fn wide_queries_are_not_deep() {
        let items: Vec<String> = (0..2000).map(|i| format!("a + {i}")).collect();
        let sql = format!(
            "SELECT {} FROM t WHERE x IN ({})",
            items.join(", "),
            (0..2000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(tokens(&sql) < 10, "{}", tokens(&sql));
        assert!(depth(&parse(&sql)) < 10);
        let mut branches = String::from("CASE");
        for i in 0..2000 {
            branches.push_str(&format!(" WHEN a = {i} THEN 'x{i}'"));
        }
        let sql = format!("SELECT {branches} END FROM t");
        assert!(tokens(&sql) < 10, "{}", tokens(&sql));
    }

    #[test]
    fn settings_are_refused_and_deep_queries_named() {
        let err = check_statement(&parse("SELECT * FROM information_schema.df_settings"), 100)
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert!(err.to_string().contains("df_settings"), "{err}");
        let err = check_statement(&parse(&chain("+", 150)), 100).unwrap_err();
        assert_eq!(err.code(), "query_too_complex");
        assert!(err.to_string().contains("query.max_expr_depth"), "{err}");
        check_statement(&parse(&chain("+", 90)), 100).unwrap();
    }
}
