//! keepalived.conf's grammar: words, quoted strings, `#` and `!` comments,
//! `{ ... }` blocks (also on one line), and `include` with globs relative to the
//! including file. Produces a tree of [`Statement`]s that knows nothing of
//! VRRP; `convert` gives it meaning.
//!
//! Like keepalived, `include` is expanded where it stands, line by line, so an
//! included file may hold whole sections or just the lines of a block.

use std::path::{Path, PathBuf};

use super::{ImportError, Location};

/// How deep includes may nest (keepalived stops at 8 too), so a file that
/// includes itself ends with an error instead of a stack overflow.
const MAX_INCLUDE_DEPTH: usize = 8;

/// One word of the file, with where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Word {
    pub(super) text: String,
    pub(super) at: Location,
}

/// A keyword, its arguments on the same line, and the block that follows, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Statement {
    pub(super) keyword: Word,
    pub(super) args: Vec<Word>,
    pub(super) block: Option<Vec<Self>>,
}

impl Statement {
    pub(super) fn at(&self) -> &Location {
        &self.keyword.at
    }

    /// Every word inside the block, keywords and arguments alike, in order: the
    /// view for list blocks (`virtual_ipaddress`, `unicast_peer`, `group`), which
    /// may put several items on one line.
    pub(super) fn block_words(&self) -> Vec<Word> {
        let mut words = Vec::new();
        for child in self.block.iter().flatten() {
            words.push(child.keyword.clone());
            words.extend(child.args.iter().cloned());
            if child.block.is_some() {
                words.extend(child.block_words());
            }
        }
        words
    }
}

#[derive(Debug)]
enum Token {
    Word(Word),
    Open(Location),
    Close(Location),
    EndOfLine,
}

/// Reads `path` and everything it includes into a statement tree.
pub(super) fn parse_file(path: &Path) -> Result<Vec<Statement>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        included_at: None,
        error,
    })?;
    let mut tokens = Vec::new();
    lex(path, &text, 0, &mut tokens)?;
    let mut tokens = tokens.into_iter().peekable();
    let statements = parse_block(&mut tokens, None)?;
    Ok(statements)
}

fn lex(path: &Path, text: &str, depth: usize, out: &mut Vec<Token>) -> Result<(), ImportError> {
    for (index, line) in text.lines().enumerate() {
        let at = Location {
            file: path.to_owned(),
            line: index + 1,
        };
        let start = out.len();
        lex_line(line, &at, out)?;
        let is_include = matches!(out.get(start), Some(Token::Word(w)) if w.text == "include");
        if is_include {
            let line_tokens: Vec<Token> = out.drain(start..).collect();
            for token in line_tokens.into_iter().skip(1) {
                match token {
                    Token::Word(pattern) => include(path, &pattern, depth, out)?,
                    _ => {
                        return Err(ImportError::Parse {
                            at,
                            message: "include takes file names or globs, not a block".into(),
                        })
                    }
                }
            }
        }
        out.push(Token::EndOfLine);
    }
    Ok(())
}

fn include(
    including: &Path,
    pattern: &Word,
    depth: usize,
    out: &mut Vec<Token>,
) -> Result<(), ImportError> {
    let parse_error = |message: String| ImportError::Parse {
        at: pattern.at.clone(),
        message,
    };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(parse_error(format!(
            "include {}: includes nest deeper than {MAX_INCLUDE_DEPTH} (does a file include itself?)",
            pattern.text
        )));
    }
    let base = including.parent().unwrap_or(Path::new(""));
    let full = base.join(&pattern.text);
    let full_text = full.to_string_lossy();
    let paths = glob::glob(&full_text)
        .map_err(|e| parse_error(format!("include {}: not a valid glob: {e}", pattern.text)))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in paths {
        let path = entry.map_err(|e| parse_error(format!("include {}: {e}", pattern.text)))?;
        files.push(path);
    }
    files.sort();
    if files.is_empty() && !has_glob_chars(&pattern.text) {
        return Err(ImportError::Read {
            path: full,
            included_at: Some(pattern.at.clone()),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|error| ImportError::Read {
            path: file.clone(),
            included_at: Some(pattern.at.clone()),
            error,
        })?;
        lex(&file, &text, depth + 1, out)?;
    }
    Ok(())
}

fn has_glob_chars(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn lex_line(line: &str, at: &Location, out: &mut Vec<Token>) -> Result<(), ImportError> {
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(Word {
                text: std::mem::take(word),
                at: at.clone(),
            }));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' if word.is_empty() => return Ok(()),
            '"' => {
                let mut quoted = String::new();
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    quoted.push(q);
                }
                if !closed {
                    return Err(ImportError::Parse {
                        at: at.clone(),
                        message: "a quoted string is not closed on its line".into(),
                    });
                }
                word.push_str(&quoted);
                // An empty quoted string is still a word.
                if word.is_empty() {
                    out.push(Token::Word(Word {
                        text: String::new(),
                        at: at.clone(),
                    }));
                }
            }
            '{' => {
                flush(&mut word, out);
                out.push(Token::Open(at.clone()));
            }
            '}' => {
                flush(&mut word, out);
                out.push(Token::Close(at.clone()));
            }
            c if c.is_whitespace() => flush(&mut word, out),
            c => word.push(c),
        }
    }
    flush(&mut word, out);
    Ok(())
}

/// Statements until the matching `}` (when `opened` says where its `{` was) or
/// the end of the input.
fn parse_block(
    tokens: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
    opened: Option<(&Location, &str)>,
) -> Result<Vec<Statement>, ImportError> {
    let mut statements: Vec<Statement> = Vec::new();
    let mut current: Option<Statement> = None;
    let mut last_line = None;
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => {
                last_line = Some(word.at.clone());
                match &mut current {
                    Some(statement) => statement.args.push(word),
                    None => {
                        current = Some(Statement {
                            keyword: word,
                            args: Vec::new(),
                            block: None,
                        })
                    }
                }
            }
            Token::EndOfLine => statements.extend(current.take()),
            Token::Open(at) => {
                // The block belongs to the words before it on its line or, with
                // `{` on a line of its own, to the statement on the line before.
                let mut owner = match current.take() {
                    Some(owner) => owner,
                    None => match statements.pop() {
                        Some(previous) if previous.block.is_none() => previous,
                        _ => {
                            return Err(ImportError::Parse {
                                at,
                                message: "`{` without a keyword before it".into(),
                            })
                        }
                    },
                };
                let name = describe(&owner);
                owner.block = Some(parse_block(tokens, Some((&owner.keyword.at, &name)))?);
                statements.push(owner);
            }
            Token::Close(at) => {
                statements.extend(current.take());
                if opened.is_some() {
                    return Ok(statements);
                }
                return Err(ImportError::Parse {
                    at,
                    message: "`}` without a block to close".into(),
                });
            }
        }
    }
    statements.extend(current.take());
    match opened {
        None => Ok(statements),
        Some((at, name)) => Err(ImportError::Parse {
            at: at.clone(),
            message: format!(
                "`{name} {{` is never closed: the input ends{} without its `}}` (truncated file?)",
                last_line.map(|l| format!(" after {l}")).unwrap_or_default()
            ),
        }),
    }
}

fn describe(statement: &Statement) -> String {
    let mut text = statement.keyword.text.clone();
    for arg in &statement.args {
        text.push(' ');
        text.push_str(&arg.text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Statement>, ImportError> {
        let mut tokens = Vec::new();
        lex(Path::new("k.conf"), text, 0, &mut tokens)?;
        parse_block(&mut tokens.into_iter().peekable(), None)
    }

    #[test]
    fn one_line_blocks_comments_and_quotes() {
        let tree = parse_text(
            "! comment\nglobal_defs { router_id lb1 } # trailing\n\
             vrrp_script chk {\n  script \"/bin/check --x 'a b'\"\n}\n",
        )
        .unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[0].keyword.text, "global_defs");
        let inner = tree[0].block.as_ref().unwrap();
        assert_eq!(inner[0].keyword.text, "router_id");
        assert_eq!(inner[0].args[0].text, "lb1");
        let script = &tree[1].block.as_ref().unwrap()[0];
        assert_eq!(script.args[0].text, "/bin/check --x 'a b'");
        assert_eq!(script.keyword.at.line, 4);
    }

    #[test]
    fn an_opening_brace_on_its_own_line_belongs_to_the_line_before() {
        let tree = parse_text("vrrp_instance VI_1\n{\n  priority 100\n}\n").unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].args[0].text, "VI_1");
        assert_eq!(tree[0].block.as_ref().unwrap()[0].keyword.text, "priority");
    }

    #[test]
    fn unbalanced_braces_and_quotes_are_errors_with_a_line() {
        let err = parse_text("vrrp_instance VI_1 {\n  priority 100\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.conf:1: `vrrp_instance VI_1 {` is never closed: the input ends after k.conf:2 \
             without its `}` (truncated file?)"
        );
        let err = parse_text("a\n}\n").unwrap_err();
        assert_eq!(err.to_string(), "k.conf:2: `}` without a block to close");
        let err = parse_text("x \"open\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.conf:1: a quoted string is not closed on its line"
        );
    }
}
