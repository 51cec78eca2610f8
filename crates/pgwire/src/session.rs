//! Session statements the server answers itself, and splitting a simple
//! query into statements.
//!
//! Clients send statements that are not queries: transaction control
//! (`BEGIN` … `COMMIT` around every psycopg statement), `SET`/`SHOW` of
//! session settings (JDBC sets `extra_float_digits` and `application_name`
//! on connect), cursors (`DECLARE … CURSOR FOR`, `FETCH`, `CLOSE`: psycopg's
//! server-side cursors), `DISCARD`, `DEALLOCATE`. They are recognised from
//! their first keywords on the token stream (no parse tree is built on the
//! request thread) and never reach the engine: `SET` only records a value
//! for `SHOW` — no engine setting can be changed, so the limits stay the
//! server's. Everything else goes to the engine, whose sandbox refuses
//! what is not a query.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// A statement the server answers without the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Begin,
    Commit,
    Rollback,
    /// `SAVEPOINT name`, `RELEASE [SAVEPOINT] name`, `ROLLBACK TO [SAVEPOINT]
    /// name`: accepted inside a transaction, like `BEGIN` (each write
    /// statement commits its own version; nothing is held to roll back).
    /// The tag to answer.
    Savepoint(&'static str),
    /// `SET [SESSION|LOCAL] name {=|TO} value`, `SET TIME ZONE value`.
    Set {
        name: String,
        value: String,
    },
    /// `RESET name` / `RESET ALL` (`None`).
    Reset(Option<String>),
    Show(String),
    /// `DECLARE name [options] CURSOR [WITH HOLD] FOR query`.
    Declare {
        name: String,
        query: String,
        hold: bool,
    },
    /// `FETCH`/`MOVE` forward: `count` rows, `None` = all.
    Fetch {
        name: String,
        count: Option<u64>,
        moving: bool,
    },
    /// `CLOSE name` / `CLOSE ALL` (`None`).
    Close(Option<String>),
    Discard,
    /// `DEALLOCATE [PREPARE] name|ALL`.
    Deallocate(Option<String>),
}

/// Why a session statement is malformed (SQLSTATE 42601 or 0A000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub sqlstate: &'static str,
    pub message: String,
}

fn syntax(message: impl Into<String>) -> CommandError {
    CommandError {
        sqlstate: "42601",
        message: message.into(),
    }
}

/// The meaningful tokens of `sql` (no whitespace or comments).
pub(crate) fn tokens(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    Some(
        toks.into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect(),
    )
}

/// A word's text: unquoted words lower-cased, quoted ones as written.
fn word(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn is_kw(t: Option<&TokenWithSpan>, kw: &str) -> bool {
    matches!(t.map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// Recognises a session statement; `Ok(None)` for anything else (a query
/// for the engine).
pub fn classify(sql: &str) -> Result<Option<Command>, CommandError> {
    let Some(toks) = tokens(sql) else {
        return Ok(None);
    };
    let toks: Vec<TokenWithSpan> = toks
        .into_iter()
        .filter(|t| !matches!(t.token, Token::SemiColon))
        .collect();
    let Some(first) = toks.first().and_then(|t| match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    }) else {
        return Ok(None);
    };
    let rest = &toks[1..];
    let cmd = match first.as_str() {
        "begin" => Command::Begin,
        "start" if is_kw(rest.first(), "transaction") => Command::Begin,
        "commit" | "end" => Command::Commit,
        "rollback" if is_kw(rest.first(), "to") => savepoint(&rest[1..], "ROLLBACK")?,
        "rollback" | "abort" => Command::Rollback,
        "savepoint" => savepoint(rest, "SAVEPOINT")?,
        "release" => savepoint(rest, "RELEASE")?,
        "set" => set(rest)?,
        "reset" => match rest {
            [t] if is_kw(Some(t), "all") => Command::Reset(None),
            _ => Command::Reset(Some(
                setting_name(rest)
                    .filter(|(_, n)| *n == rest.len())
                    .map(|(s, _)| s)
                    .ok_or_else(|| syntax("RESET needs one setting name or ALL"))?,
            )),
        },
        "show" => Command::Show(
            show_alias(rest)
                .or_else(|| {
                    setting_name(rest)
                        .filter(|(_, n)| *n == rest.len())
                        .map(|(s, _)| s)
                })
                .ok_or_else(|| syntax("SHOW needs one setting name"))?,
        ),
        "declare" => declare(sql, rest)?,
        "fetch" | "move" => fetch(rest, first == "move")?,
        "close" => match rest {
            [t] if is_kw(Some(t), "all") => Command::Close(None),
            [t] => Command::Close(Some(
                word(&t.token).ok_or_else(|| syntax("CLOSE needs a cursor name"))?,
            )),
            _ => return Err(syntax("CLOSE needs one cursor name or ALL")),
        },
        "discard" => Command::Discard,
        "deallocate" => {
            let rest = if is_kw(rest.first(), "prepare") {
                &rest[1..]
            } else {
                rest
            };
            match rest {
                [t] if is_kw(Some(t), "all") => Command::Deallocate(None),
                [t] => Command::Deallocate(Some(
                    word(&t.token).ok_or_else(|| syntax("DEALLOCATE needs a name"))?,
                )),
                _ => return Err(syntax("DEALLOCATE needs one statement name or ALL")),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(cmd))
}

/// `[SAVEPOINT] name` after `SAVEPOINT`, `RELEASE` or `ROLLBACK TO`.
fn savepoint(rest: &[TokenWithSpan], tag: &'static str) -> Result<Command, CommandError> {
    let rest = match rest {
        [kw, name] if is_kw(Some(kw), "savepoint") && word(&name.token).is_some() => &rest[1..],
        _ => rest,
    };
    match rest {
        [name] if word(&name.token).is_some() => Ok(Command::Savepoint(tag)),
        _ => Err(syntax("a savepoint command needs one savepoint name")),
    }
}

/// PostgreSQL's multi-word `SHOW` forms and the settings they name
/// (SQLAlchemy asks `SHOW TRANSACTION ISOLATION LEVEL` on connect).
fn show_alias(toks: &[TokenWithSpan]) -> Option<String> {
    let words: Vec<String> = toks.iter().map(|t| word(&t.token)).collect::<Option<_>>()?;
    let name = match words.join(" ").as_str() {
        "transaction isolation level" => "transaction_isolation",
        "time zone" => "timezone",
        "session authorization" => "session_authorization",
        _ => return None,
    };
    Some(name.to_string())
}

/// A setting name (`a` or `a.b`) at the start of `toks`, and how many
/// tokens it took.
fn setting_name(toks: &[TokenWithSpan]) -> Option<(String, usize)> {
    let mut name = word(&toks.first()?.token)?;
    let mut used = 1;
    while matches!(toks.get(used).map(|t| &t.token), Some(Token::Period)) {
        name.push('.');
        name.push_str(&word(&toks.get(used + 1)?.token)?);
        used += 2;
    }
    Some((name.to_ascii_lowercase(), used))
}

fn set(rest: &[TokenWithSpan]) -> Result<Command, CommandError> {
    let rest = if is_kw(rest.first(), "session") || is_kw(rest.first(), "local") {
        &rest[1..]
    } else {
        rest
    };
    if is_kw(rest.first(), "time") && is_kw(rest.get(1), "zone") {
        return Ok(Command::Set {
            name: "timezone".to_string(),
            value: value_text(&rest[2..]),
        });
    }
    let (name, used) = setting_name(rest).ok_or_else(|| syntax("SET needs a setting name"))?;
    let rest = &rest[used..];
    let rest = match rest.first().map(|t| &t.token) {
        Some(Token::Eq) => &rest[1..],
        _ if is_kw(rest.first(), "to") => &rest[1..],
        _ => return Err(syntax(format!("SET {name} needs = or TO and a value"))),
    };
    if rest.is_empty() {
        return Err(syntax(format!("SET {name} needs a value")));
    }
    Ok(Command::Set {
        name,
        value: value_text(rest),
    })
}

/// A SET value as SHOW reports it: strings unquoted, lists joined by ", ".
fn value_text(toks: &[TokenWithSpan]) -> String {
    let mut out = String::new();
    for t in toks {
        match &t.token {
            Token::Comma => out.push_str(", "),
            Token::SingleQuotedString(s) => out.push_str(s),
            Token::Word(w) => out.push_str(&w.value),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

fn declare(sql: &str, rest: &[TokenWithSpan]) -> Result<Command, CommandError> {
    let name = rest
        .first()
        .and_then(|t| word(&t.token))
        .ok_or_else(|| syntax("DECLARE needs a cursor name"))?;
    // Options (BINARY, SCROLL, WITH/WITHOUT HOLD, …) up to FOR; the query
    // is the rest of the text after FOR, as the client wrote it.
    let Some(pos) = rest.iter().position(|t| is_kw(Some(t), "for")) else {
        return Err(syntax("DECLARE … CURSOR needs FOR and a query"));
    };
    if !rest[..pos].iter().any(|t| is_kw(Some(t), "cursor")) {
        return Err(syntax("only DECLARE … CURSOR FOR a query is supported"));
    }
    if rest[..pos]
        .iter()
        .any(|t| is_kw(Some(t), "scroll") || is_kw(Some(t), "binary"))
    {
        return Err(CommandError {
            sqlstate: "0A000",
            message: "cursors here are forward-only and text/binary by the FETCH: SCROLL and BINARY are not supported".to_string(),
        });
    }
    let after_for = rest
        .get(pos + 1)
        .ok_or_else(|| syntax("DECLARE … FOR needs a query"))?;
    let query = slice_from(sql, after_for)
        .trim()
        .trim_end_matches(';')
        .to_string();
    let hold = rest[..pos]
        .windows(2)
        .any(|w| is_kw(Some(&w[0]), "with") && is_kw(Some(&w[1]), "hold"));
    Ok(Command::Declare { name, query, hold })
}

fn fetch(rest: &[TokenWithSpan], moving: bool) -> Result<Command, CommandError> {
    let mut i = 0;
    let mut count = Some(1);
    let num = |t: Option<&TokenWithSpan>| match t.map(|t| &t.token) {
        Some(Token::Number(n, _)) => n.parse::<u64>().ok(),
        _ => None,
    };
    if is_kw(rest.first(), "next") {
        i = 1;
    } else if is_kw(rest.first(), "all") {
        count = None;
        i = 1;
    } else if is_kw(rest.first(), "forward") {
        i = 1;
        if is_kw(rest.get(1), "all") {
            count = None;
            i = 2;
        } else if let Some(n) = num(rest.get(1)) {
            count = Some(n);
            i = 2;
        }
    } else if let Some(n) = num(rest.first()) {
        count = Some(n);
        i = 1;
    } else if rest.first().is_some_and(|t| {
        ["prior", "first", "last", "absolute", "relative", "backward"]
            .iter()
            .any(|k| is_kw(Some(t), k))
    }) {
        return Err(CommandError {
            sqlstate: "0A000",
            message: "cursors here are forward-only: use FETCH [FORWARD] [n|ALL]".to_string(),
        });
    }
    if is_kw(rest.get(i), "from") || is_kw(rest.get(i), "in") {
        i += 1;
    }
    match &rest[i.min(rest.len())..] {
        [t] => Ok(Command::Fetch {
            name: word(&t.token).ok_or_else(|| syntax("FETCH needs a cursor name"))?,
            count,
            moving,
        }),
        _ => Err(syntax("FETCH [FORWARD] [n|ALL] [FROM] cursor")),
    }
}

/// Byte offset of a token in `sql` (spans count lines and characters).
pub(crate) fn offset(sql: &str, t: &TokenWithSpan) -> usize {
    let (line, col) = (t.span.start.line as usize, t.span.start.column as usize);
    let mut off = 0;
    for (i, l) in sql.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        off += l.len();
    }
    sql.len()
}

fn slice_from<'a>(sql: &'a str, t: &TokenWithSpan) -> &'a str {
    &sql[offset(sql, t).min(sql.len())..]
}

/// Splits a simple query into its statements at top-level semicolons
/// (semicolons in strings, quoted names and comments are tokens of their
/// own kind). SQL that does not tokenize is one statement, for the parser
/// to report.
pub fn split(sql: &str) -> Vec<String> {
    let Some(toks) = tokens(sql) else {
        return vec![sql.to_string()];
    };
    let mut out = Vec::new();
    let mut start = 0;
    for t in toks.iter().filter(|t| matches!(t.token, Token::SemiColon)) {
        let end = offset(sql, t);
        out.push(sql[start..end].to_string());
        start = end + 1;
    }
    out.push(sql[start.min(sql.len())..].to_string());
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_session_statements() {
        assert_eq!(classify("BEGIN").unwrap(), Some(Command::Begin));
        assert_eq!(
            classify("start transaction read only").unwrap(),
            Some(Command::Begin)
        );
        assert_eq!(classify("COMMIT;").unwrap(), Some(Command::Commit));
        assert_eq!(
            classify("SET extra_float_digits = 3").unwrap(),
            Some(Command::Set {
                name: "extra_float_digits".into(),
                value: "3".into()
            })
        );
        assert_eq!(
            classify("SET application_name TO 'PostgreSQL JDBC Driver'").unwrap(),
            Some(Command::Set {
                name: "application_name".into(),
                value: "PostgreSQL JDBC Driver".into()
            })
        );
        assert_eq!(
            classify("SET TIME ZONE 'UTC'").unwrap(),
            Some(Command::Set {
                name: "timezone".into(),
                value: "UTC".into()
            })
        );
        assert_eq!(
            classify("show search_path").unwrap(),
            Some(Command::Show("search_path".into()))
        );
        assert_eq!(
            classify("SHOW TRANSACTION ISOLATION LEVEL").unwrap(),
            Some(Command::Show("transaction_isolation".into()))
        );
        assert_eq!(
            classify("show time zone").unwrap(),
            Some(Command::Show("timezone".into()))
        );
        assert!(classify("SHOW transaction isolation").is_err());
        assert_eq!(classify("SELECT 1").unwrap(), None);
        assert_eq!(
            classify("with x as (select 1) select * from x").unwrap(),
            None
        );
        assert!(classify("SET").is_err());
    }

    #[test]
    fn savepoints() {
        for (sql, tag) in [
            ("SAVEPOINT _pg3_1", "SAVEPOINT"),
            ("release savepoint _pg3_1", "RELEASE"),
            ("RELEASE sp", "RELEASE"),
            ("ROLLBACK TO SAVEPOINT \"_pg3_1\"", "ROLLBACK"),
            ("rollback to sp;", "ROLLBACK"),
        ] {
            assert_eq!(
                classify(sql).unwrap(),
                Some(Command::Savepoint(tag)),
                "{sql}"
            );
        }
        assert_eq!(classify("ROLLBACK").unwrap(), Some(Command::Rollback));
        assert!(classify("SAVEPOINT").is_err());
        assert!(classify("ROLLBACK TO").is_err());
        assert!(classify("RELEASE a b").is_err());
    }

    #[test]
    fn cursors() {
        assert_eq!(
            classify("DECLARE \"c1\" CURSOR WITHOUT HOLD FOR SELECT a FROM t WHERE b = $1")
                .unwrap(),
            Some(Command::Declare {
                name: "c1".into(),
                query: "SELECT a FROM t WHERE b = $1".into(),
                hold: false
            })
        );
        assert_eq!(
            classify("FETCH FORWARD 100 FROM \"c1\"").unwrap(),
            Some(Command::Fetch {
                name: "c1".into(),
                count: Some(100),
                moving: false
            })
        );
        assert_eq!(
            classify("fetch all in c").unwrap(),
            Some(Command::Fetch {
                name: "c".into(),
                count: None,
                moving: false
            })
        );
        assert_eq!(
            classify("CLOSE \"c1\"").unwrap(),
            Some(Command::Close(Some("c1".into())))
        );
        assert_eq!(
            classify("FETCH PRIOR FROM c").unwrap_err().sqlstate,
            "0A000"
        );
        assert_eq!(
            classify("DECLARE c SCROLL CURSOR FOR SELECT 1")
                .unwrap_err()
                .sqlstate,
            "0A000"
        );
    }

    #[test]
    fn splits_at_top_level_semicolons() {
        assert_eq!(
            split("SELECT ';'; SELECT \"a;b\" FROM t -- x;\n; ; SELECT 3"),
            vec!["SELECT ';'", " SELECT \"a;b\" FROM t -- x;\n", " SELECT 3"]
        );
        assert_eq!(
            split("SELECT 'é'; SELECT 2"),
            vec!["SELECT 'é'", " SELECT 2"]
        );
        assert_eq!(split("  "), Vec::<String>::new());
    }
}
