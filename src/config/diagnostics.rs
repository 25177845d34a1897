//! Where a problem is and how it is worded: [`Location`] (`FILE:LINE:COLUMN`),
//! [`Diagnostic`], the error types [`load`](super::load) and
//! [`from_toml`](super::from_toml) return, and the byte-offset-to-line index that
//! turns serde's spans into positions.
//!
//! This module only describes problems; it decides nothing about what is valid.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A position in a configuration file (1-based line and column; the column counts
/// characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The configuration file, as passed to [`load`](super::load) or [`from_toml`](super::from_toml).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a configuration file: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the offending value (or table) starts.
    pub location: Location,
    /// What is wrong and what would be valid, without the location.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every semantic problem found in one file, in file order; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(Vec<Diagnostic>);

impl ConfigErrors {
    /// Wraps the problems found in one file, already in file order.
    pub(super) fn new(problems: Vec<Diagnostic>) -> Self {
        Self(problems)
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file itself could not be read.
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The text is not valid TOML, has an unknown key or a value of the wrong type.
    /// Only the first such problem is reported.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file parses but breaks one or more rules; all of them are reported.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl ConfigError {
    /// The positioned problems (empty for [`ConfigError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Read { .. } => &[],
            Self::Syntax(d) => std::slice::from_ref(d),
            Self::Invalid(errors) => &errors.0,
        }
    }
}

/// One line per problem; serde's wording names Rust types, users write TOML.
pub(super) fn tidy_toml_message(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
}

/// Turns byte offsets in one file's text into [`Location`]s.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    origin: &'a Path,
    /// Byte offset of the start of every line.
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str, origin: &'a Path) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text,
            origin,
            line_starts,
        }
    }

    /// The file these offsets are in, as named in messages.
    pub(super) fn origin(&self) -> &Path {
        self.origin
    }

    /// The position of byte `offset` (clamped to the end of the text).
    pub(super) fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        // `get` rather than indexing: a span never splits a character, but if it did
        // we would rather count from the line start than panic.
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.origin.to_owned(),
            line,
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n\nlast";
        let index = LineIndex::new(text, Path::new("f.toml"));
        let at = |o| {
            let l = index.locate(o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(at(12), (2, 6));
        assert_eq!(at(text.len()), (4, 5));
        assert_eq!(at(text.len() + 10), (4, 5));
        assert_eq!(index.locate(4).to_string(), "f.toml:1:5");
    }
}
