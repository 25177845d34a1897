//! keepalived.conf's grammar as keepalived 2.x reads it (lib/parser.c):
//! comments, quoted strings, `{ ... }` blocks (also on one line), `include` with
//! globs relative to the including file, `@HOST` / `@^HOST` conditional lines
//! and `$NAME=VALUE` definitions. Produces a tree of [`Statement`]s that knows
//! nothing of VRRP; `convert` gives it meaning.
//!
//! Like keepalived, `include` is expanded where it stands, line by line, so an
//! included file may hold whole sections or just the lines of a block.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::{ImportError, Location, Note};

/// How deep includes may nest (keepalived stops at 8 too), so a file that
/// includes itself ends with an error instead of a stack overflow.
const MAX_INCLUDE_DEPTH: usize = 8;
/// How long a line may grow by `$NAME` expansion (keepalived's line buffer is
/// this size too), so a definition that refers to itself ends.
const MAX_EXPANDED_LINE: usize = 8192;

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
    /// view for blocks keepalived reads as one list of words (a sync group's
    /// `group`, `track_script`, `track_interface`).
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

/// A line that began `@HOST` or `@^HOST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Conditional {
    pub(super) at: Location,
    /// `@lb1` or `@^lb1`, as written.
    pub(super) condition: String,
    /// Whether the line was read (it names this host, or `@^` another).
    pub(super) applied: bool,
}

/// The statement tree and what reading it involved.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) statements: Vec<Statement>,
    /// The `@HOST` / `@^HOST` lines, in the order read.
    pub(super) conditionals: Vec<Conditional>,
    /// What the reader could not follow (`~SEQ`, `$_RANDOM`, ...).
    pub(super) notes: Vec<Note>,
}

#[derive(Debug)]
enum Token {
    Word(Word),
    Open(Location),
    Close(Location),
    EndOfLine,
}

/// Reads `path` and everything it includes into a statement tree, applying the
/// `@HOST` lines for `host` (keepalived's config-id).
pub(super) fn parse_file(path: &Path, host: &str) -> Result<Parsed, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        included_at: None,
        error,
    })?;
    parse_text(path, &text, host)
}

/// [`parse_file`] on `text`, read from `path` (includes are relative to it).
pub(super) fn parse_text(path: &Path, text: &str, host: &str) -> Result<Parsed, ImportError> {
    let mut reader = Reader::new(host);
    let mut tokens = Vec::new();
    reader.lex(path, text, 0, &mut tokens)?;
    let mut tokens = tokens.into_iter().peekable();
    let statements = parse_block(&mut tokens, None)?;
    Ok(Parsed {
        statements,
        conditionals: reader.conditionals,
        notes: reader.notes,
    })
}

/// The line-by-line state keepalived's `read_line` keeps: the config-id and the
/// definitions made so far.
struct Reader<'a> {
    host: &'a str,
    /// `$NAME=VALUE` definitions: one line each, or several for a value
    /// continued with `\`.
    definitions: HashMap<String, Vec<String>>,
    conditionals: Vec<Conditional>,
    notes: Vec<Note>,
}

impl<'a> Reader<'a> {
    fn new(host: &'a str) -> Self {
        Self {
            host,
            definitions: HashMap::new(),
            conditionals: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn note(&mut self, at: &Location, message: String) {
        self.notes.push(Note {
            at: at.clone(),
            message,
            advice: false,
        });
    }

    fn lex(
        &mut self,
        path: &Path,
        text: &str,
        depth: usize,
        out: &mut Vec<Token>,
    ) -> Result<(), ImportError> {
        let mut lines = text.lines().enumerate();
        while let Some((index, raw)) = lines.next() {
            let at = Location {
                file: path.to_owned(),
                line: index + 1,
            };
            // A multi-line definition's value becomes several lines where it is
            // used; they are read one after the other, as keepalived does.
            let mut queue = VecDeque::from([decomment(raw)]);
            while let Some(line) = queue.pop_front() {
                if line.is_empty() {
                    continue;
                }
                let Some(line) = self.conditional(line, &at) else {
                    continue;
                };
                if let Some((name, value)) = definition(&line) {
                    let segments = self.definition_value(value, &mut lines);
                    self.definitions.insert(name.to_owned(), segments);
                    continue;
                }
                if line.starts_with("~SEQ") || line.starts_with("~LST") {
                    let head = line.split_whitespace().next().unwrap_or("~SEQ").to_owned();
                    self.note(&at, format!(
                        "{head}: the importer does not expand keepalived's generated lines; write them out; not carried over"
                    ));
                    continue;
                }
                let line = match self.substitute(&line, &at) {
                    Some((first, rest)) => {
                        for segment in rest.into_iter().rev() {
                            queue.push_front(segment);
                        }
                        // keepalived takes comments out again after substituting.
                        decomment(&first)
                    }
                    None => line,
                };
                self.tokens(path, &line, &at, depth, out)?;
                out.push(Token::EndOfLine);
            }
            out.push(Token::EndOfLine);
        }
        Ok(())
    }

    /// `@HOST rest` is `rest` on host HOST and nothing elsewhere; `@^HOST rest`
    /// the other way round (lib/parser.c, `read_line`).
    fn conditional(&mut self, line: String, at: &Location) -> Option<String> {
        let Some(rest) = line.strip_prefix('@') else {
            return Some(line);
        };
        let (negated, rest) = match rest.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let Some(end) = rest.find([' ', '\t']) else {
            // keepalived drops a condition with nothing after it.
            self.conditionals.push(Conditional {
                at: at.clone(),
                condition: line.clone(),
                applied: false,
            });
            return None;
        };
        let id = &rest[..end];
        let applied = (id == self.host) != negated;
        self.conditionals.push(Conditional {
            at: at.clone(),
            condition: format!("@{}{id}", if negated { "^" } else { "" }),
            applied,
        });
        applied.then(|| rest[end..].trim_start_matches([' ', '\t']).to_owned())
    }

    /// A definition's value: the rest of its line and, while lines end in `\`,
    /// the lines after it (lib/parser.c, `check_definition`).
    fn definition_value<'t>(
        &mut self,
        value: &str,
        lines: &mut impl Iterator<Item = (usize, &'t str)>,
    ) -> Vec<String> {
        let mut segments = Vec::new();
        let (first, mut continued) = continuation(value);
        if !first.is_empty() {
            segments.push(first);
        }
        while continued {
            let Some((_, raw)) = lines.next() else { break };
            // An empty line ends the value; a line with only a comment does not.
            if raw.trim_end_matches('\r').is_empty() {
                break;
            }
            let line = decomment(raw);
            if line.is_empty() {
                continue;
            }
            let (segment, more) = continuation(&line);
            if !segment.is_empty() {
                segments.push(segment);
            }
            continued = more;
        }
        segments
    }

    /// `line` with `$NAME` and `${NAME}` replaced by their definitions (lib/parser.c,
    /// `replace_param`), and the further lines of a multi-line value that ends
    /// the line; `None` when nothing was replaced.
    fn substitute(&mut self, line: &str, at: &Location) -> Option<(String, Vec<String>)> {
        let mut line = line.to_owned();
        let mut rest = Vec::new();
        let mut replaced = false;
        let mut position = 0;
        while let Some(offset) = line[position..].find('$') {
            let dollar = position + offset;
            let Some(reference) = self.reference(&line[dollar + 1..], at) else {
                position = dollar + 1;
                continue;
            };
            let mut value = reference.value;
            let first = if value.is_empty() {
                String::new()
            } else {
                value.remove(0)
            };
            if reference.multiline {
                rest = value;
            }
            line.replace_range(dollar..dollar + 1 + reference.length, &first);
            replaced = true;
            if line.len() > MAX_EXPANDED_LINE {
                self.note(at, format!(
                    "$ substitution makes the line longer than {MAX_EXPANDED_LINE} bytes (does a definition refer to itself?); the line is left out"
                ));
                return Some((String::new(), Vec::new()));
            }
            // Not advanced: the value may itself refer to definitions.
            position = dollar;
        }
        replaced.then_some((line, rest))
    }

    /// The definition `text` (what follows a `$`) refers to, if any. A name
    /// without braces ends at a blank, `,`, `)` or the end of the line; a
    /// multi-line value only replaces a reference that ends the line.
    fn reference(&mut self, text: &str, at: &Location) -> Option<Reference> {
        let (braced, body) = match text.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, text),
        };
        let first = body.chars().next()?;
        if !(first.is_ascii_alphabetic() || first == '_') {
            return None;
        }
        let name_length = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let name = &body[..name_length];
        let after = &body[name_length..];
        let (length, parameters) = if braced {
            let close = after.find('}')?;
            let parameters = after[..close].trim();
            if after[..close]
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '\t'))
            {
                return None;
            }
            (1 + name_length + close + 1, parameters)
        } else {
            match after.chars().next() {
                None | Some(' ' | '\t' | ',' | ')') => (name_length, ""),
                Some(_) => return None,
            }
        };
        let ends_line = text[length..].is_empty();
        if let Some(value) = self.definitions.get(name) {
            if !parameters.is_empty() {
                return None;
            }
            let multiline = value.len() > 1;
            if multiline && !ends_line {
                return None;
            }
            return Some(Reference {
                length,
                value: value.clone(),
                multiline,
            });
        }
        let value = match name {
            "_INSTANCE" if parameters.is_empty() => self.host.to_owned(),
            "_HASH" if parameters.is_empty() => "#".to_owned(),
            "_BANG" if parameters.is_empty() => "!".to_owned(),
            "_PWD" | "_RANDOM" | "_ENV" => {
                self.note(at, format!(
                    "${}: the importer does not expand keepalived's {name}; the line is read as written",
                    &text[..length]
                ));
                return None;
            }
            _ => return None,
        };
        Some(Reference {
            length,
            value: vec![value],
            multiline: false,
        })
    }

    /// Splits a line into tokens, expanding `include`.
    fn tokens(
        &mut self,
        path: &Path,
        line: &str,
        at: &Location,
        depth: usize,
        out: &mut Vec<Token>,
    ) -> Result<(), ImportError> {
        let start = out.len();
        lex_line(line, at, out)?;
        let is_include = matches!(out.get(start), Some(Token::Word(w)) if w.text == "include");
        if is_include {
            let line_tokens: Vec<Token> = out.drain(start..).collect();
            for token in line_tokens.into_iter().skip(1) {
                match token {
                    Token::Word(pattern) => self.include(path, &pattern, depth, out)?,
                    _ => {
                        return Err(ImportError::Parse {
                            at: at.clone(),
                            message: "include takes file names or globs, not a block".into(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
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
            self.lex(&file, &text, depth + 1, out)?;
        }
        Ok(())
    }
}

/// A definition a `$` refers to.
struct Reference {
    /// How many bytes after the `$` the reference takes.
    length: usize,
    value: Vec<String>,
    multiline: bool,
}

/// `$NAME=VALUE` (no blank before the `=`): the name and the value with leading
/// blanks removed (lib/parser.c, `check_definition`).
fn definition(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_prefix('$')?;
    let first = body.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let (name, value) = body.split_once('=')?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name, value.trim_start_matches([' ', '\t'])))
}

/// A definition line without its continuing `\` (and the blanks before it),
/// and whether it had one.
fn continuation(line: &str) -> (String, bool) {
    match line.strip_suffix('\\') {
        Some(rest) => (rest.trim_end_matches([' ', '\t']).to_owned(), true),
        None => (line.to_owned(), false),
    }
}

/// A line as keepalived's `decomment` leaves it: without leading and trailing
/// blanks, cut at the first `#` or `!` outside double quotes, `\#` and `\!`
/// outside quotes read as the character itself.
fn decomment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut quoted = false;
    let mut chars = raw.trim_start_matches([' ', '\t']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            '\\' => match chars.next() {
                Some(escaped @ ('#' | '!')) if !quoted => out.push(escaped),
                Some(next) => {
                    out.push(c);
                    out.push(next);
                }
                None => out.push(c),
            },
            '#' | '!' if !quoted => break,
            c => out.push(c),
        }
    }
    let kept = out.trim_end_matches([' ', '\t']).len();
    out.truncate(kept);
    out
}

fn has_glob_chars(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Splits a decommented line into words as keepalived's `alloc_strvec` does: a
/// double quote starts a word that runs to the next one (without the quotes),
/// and a word ends at a blank or a quote; `{` and `}` outside quotes stand
/// alone.
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
            '"' => {
                flush(&mut word, out);
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
                // Even an empty quoted string is a word.
                out.push(Token::Word(Word {
                    text: quoted,
                    at: at.clone(),
                }));
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

    fn tree(text: &str) -> Result<Vec<Statement>, ImportError> {
        Ok(parse_for("lb1", text)?.statements)
    }

    fn parse_for(host: &str, text: &str) -> Result<Parsed, ImportError> {
        parse_text(Path::new("k.conf"), text, host)
    }

    /// Each top-level statement as `keyword arg arg`.
    fn lines(parsed: &Parsed) -> Vec<String> {
        parsed.statements.iter().map(describe).collect()
    }

    #[test]
    fn one_line_blocks_comments_and_quotes() {
        let tree = tree(
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
        let tree = tree("vrrp_instance VI_1\n{\n  priority 100\n}\n").unwrap();
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].args[0].text, "VI_1");
        assert_eq!(tree[0].block.as_ref().unwrap()[0].keyword.text, "priority");
    }

    #[test]
    fn unbalanced_braces_and_quotes_are_errors_with_a_line() {
        let err = tree("vrrp_instance VI_1 {\n  priority 100\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.conf:1: `vrrp_instance VI_1 {` is never closed: the input ends after k.conf:2 \
             without its `}` (truncated file?)"
        );
        let err = tree("a\n}\n").unwrap_err();
        assert_eq!(err.to_string(), "k.conf:2: `}` without a block to close");
        let err = tree("x \"open\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k.conf:1: a quoted string is not closed on its line"
        );
    }

    #[test]
    fn comments_start_anywhere_outside_quotes_as_in_keepalived() {
        // lib/parser.c `decomment`: `#` and `!` end the line mid-word too,
        // unless quoted or escaped with `\`.
        let parsed = parse_for(
            "lb1",
            "auth_pass se!cret\nauth_pass \"se!cret\"\nauth_pass se\\!cret\nscript a\"b c\"\n",
        )
        .unwrap();
        assert_eq!(
            lines(&parsed),
            [
                "auth_pass se",
                "auth_pass se!cret",
                "auth_pass se!cret",
                "script a b c"
            ]
        );
    }

    #[test]
    fn conditional_lines_apply_on_their_host_only() {
        let text = "@lb1 priority 150\n@lb2 priority 100\n@^lb1 state BACKUP\n\
                    @lb1\n  @lb1   interface eth0\n";
        let on_lb1 = parse_for("lb1", text).unwrap();
        assert_eq!(lines(&on_lb1), ["priority 150", "interface eth0"]);
        let on_lb2 = parse_for("lb2", text).unwrap();
        assert_eq!(lines(&on_lb2), ["priority 100", "state BACKUP"]);
        let applied: Vec<(usize, &str, bool)> = on_lb2
            .conditionals
            .iter()
            .map(|c| (c.at.line, c.condition.as_str(), c.applied))
            .collect();
        assert_eq!(
            applied,
            [
                (1, "@lb1", false),
                (2, "@lb2", true),
                (3, "@^lb1", true),
                (4, "@lb1", false),
                (5, "@lb1", false)
            ]
        );
        // A longer or shorter name is another host.
        let other = parse_for("lb10", text).unwrap();
        assert_eq!(lines(&other), ["state BACKUP"]);
    }

    #[test]
    fn definitions_are_substituted_as_keepalived_does() {
        let text = "@lb1 $PRIO=150\n@lb2 $PRIO=100\n$IF=eth0\n$VIP=10.0.0.5\n\
                    priority $PRIO\ninterface ${IF}\nvip ${VIP}/24 $VIP/24\n\
                    name $_INSTANCE\nunknown $NOPE\n$BOTH=$IF,$PRIO\nboth $BOTH\n";
        let parsed = parse_for("lb2", text).unwrap();
        assert_eq!(
            lines(&parsed),
            [
                "priority 100",
                "interface eth0",
                // `$VIP/24`: without braces a name must end at a blank, `,` or `)`.
                "vip 10.0.0.5/24 $VIP/24",
                "name lb2",
                "unknown $NOPE",
                "both eth0,100"
            ]
        );
        assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
    }

    #[test]
    fn a_multi_line_definition_becomes_lines_where_it_ends_a_line() {
        let text =
            "$ADDRS=10.0.0.1/24 \\\n  10.0.0.2/24 # two\n\nvirtual_ipaddress {\n $ADDRS\n}\n";
        let parsed = parse_for("lb1", text).unwrap();
        let block = parsed.statements[0].block.as_ref().unwrap();
        let vips: Vec<String> = block.iter().map(describe).collect();
        assert_eq!(vips, ["10.0.0.1/24", "10.0.0.2/24"]);
        assert!(block.iter().all(|s| s.at().line == 5));
    }

    #[test]
    fn a_definition_that_refers_to_itself_ends_with_a_note() {
        let parsed = parse_for("lb1", "$A=x $A\nkey $A\n").unwrap();
        assert!(parsed.statements.is_empty());
        assert!(
            parsed.notes[0].message.contains("refer to itself"),
            "{:?}",
            parsed.notes
        );
    }
}
