//! Diagnostics: one problem in a file, with where it is and what to do about it.
//!
//! Every config error is a `Diagnostic` so that `validate` can report all of them at once and
//! render each like a compiler does: message, `file:line:col`, the offending line, a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a pipeline file or a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The source line the problem is on, for display (config text, never data).
    #[serde(skip)]
    pub snippet: Option<(String, usize)>,
}

impl Diagnostic {
    /// A problem at a byte span of `text`, the content of `file`.
    pub fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column, snippet) = match span {
            Some(span) => locate(text, span),
            None => (0, 0, None),
        };
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            hint: None,
            snippet,
        }
    }

    /// A problem that concerns a whole file (missing, unreadable).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic::at(file, "", None, message)
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Byte span → (line, column, (line text, caret width)), all 1-based.
fn locate(text: &str, span: Range<usize>) -> (usize, usize, Option<(String, usize)>) {
    let start = span.start.min(text.len());
    let before = &text[..floor_char_boundary(text, start)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line_text = text[line_start..line_end]
        .trim_end_matches('\r')
        .to_string();
    let end = span.end.clamp(start, line_end);
    let width = text[floor_char_boundary(text, start)..floor_char_boundary(text, end)]
        .chars()
        .count()
        .max(1);
    (line, column, Some((line_text, width)))
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if self.line > 0 {
            writeln!(
                f,
                "  --> {}:{}:{}",
                self.file.display(),
                self.line,
                self.column
            )?;
        } else {
            writeln!(f, "  --> {}", self.file.display())?;
        }
        if let Some((text, width)) = &self.snippet {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {text}")?;
            let lead: String = text
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {lead}{}", "^".repeat(*width))?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// All problems found in one validation, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// Replaces every quoted part of a message (in backticks, single or double quotes) with `…`
/// unless `keep` allows it. Messages from the engine can quote cell values; ours must not.
pub fn redact_quoted(message: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['`', '\'', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        // A closing quote is one not followed by a letter or digit, so a value like O'Brien
        // is taken whole.
        let close = after
            .char_indices()
            .find(|&(i, c)| {
                c == quote && !after[i + c.len_utf8()..].starts_with(|n: char| n.is_alphanumeric())
            })
            .map(|(i, _)| i);
        match close {
            Some(end) => {
                let inner = &after[..end];
                if keep(inner) {
                    out.push_str(inner);
                } else {
                    out.push('…');
                }
                out.push(quote);
                rest = &after[end + 1..];
            }
            None => {
                // An unmatched quote: everything after it may be a value.
                out.push('…');
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_quoted_parts_it_is_not_told_to_keep() {
        let m = super::redact_quoted(
            "bad value 'alice@example.com' in column `email` at \"x\"",
            |s| s == "email",
        );
        assert_eq!(m, "bad value '…' in column `email` at \"…\"");
        assert_eq!(
            super::redact_quoted("value 'O'Brien' here", |_| false),
            "value '…' here"
        );
        assert_eq!(
            super::redact_quoted("value 'unclosed here", |_| false),
            "value '…"
        );
    }

    use super::*;

    #[test]
    fn locates_line_and_column_of_a_span() {
        let text = "a = 1\nbb = \"x\"\n";
        let d = Diagnostic::at(Path::new("p.toml"), text, Some(6..8), "bad key");
        assert_eq!((d.line, d.column), (2, 1));
        let shown = d.to_string();
        assert!(shown.contains("p.toml:2:1"), "{shown}");
        assert!(shown.contains("^^"), "{shown}");
    }

    #[test]
    fn counts_columns_in_characters_not_bytes() {
        let text = "name = \"Zoë\" x";
        let d = Diagnostic::at(Path::new("p.toml"), text, Some(14..15), "m");
        assert_eq!(d.column, 14);
    }
}

/// The nearest name by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// "did you mean `x`?" for a close name, else the list of names.
pub fn did_you_mean(name: &str, candidates: &[String], what: &str) -> String {
    match closest(name, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("{what}: {}", candidates.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod closest_tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = vec![
            "email".to_string(),
            "phone".to_string(),
            "birth_date".to_string(),
        ];
        assert_eq!(closest("emial", &names), Some("email"));
        assert_eq!(closest("birthdate", &names), Some("birth_date"));
        assert_eq!(closest("zzzzzz", &names), None);
        assert_eq!(
            did_you_mean("zzzzzz", &names, "the columns are"),
            "the columns are: email, phone, birth_date"
        );
    }
}

/// Adds a problem and marks the item it is about as bad.
pub fn flag(diags: &mut Diagnostics, d: Diagnostic, bad: &mut bool) {
    diags.push(d);
    *bad = true;
}
