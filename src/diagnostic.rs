//! A user-facing problem: message, where it is (file, line, column) and what to do.
//!
//! Library code builds [`Diagnostic`]s; the CLI renders them with source
//! snippets (via `miette`) for humans, or as JSON for machines.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Path as the user knows it: relative to the project directory.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters); 0 when unknown.
    pub column: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<Location>,
    pub help: Option<String>,
    /// Length, in characters, of the span to underline at `location` (0: a point).
    #[serde(skip)]
    pub span_len: usize,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic { message: message.into(), location: None, help: None, span_len: 0 }
    }

    pub fn at(mut self, file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        self.location = Some(Location { file: file.into(), line, column });
        self
    }

    /// Point at the whole file when no finer position is known.
    pub fn in_file(self, file: impl Into<PathBuf>) -> Self {
        self.at(file, 0, 0)
    }

    pub fn with_span_len(mut self, len: usize) -> Self {
        self.span_len = len;
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col: message` — the one-line form used in logs and tests.
    pub fn headline(&self) -> String {
        match &self.location {
            Some(Location { file, line: 0, .. }) => format!("{}: {}", file.display(), self.message),
            Some(Location { file, line, column: 0 }) => {
                format!("{}:{}: {}", file.display(), line, self.message)
            }
            Some(Location { file, line, column }) => {
                format!("{}:{}:{}: {}", file.display(), line, column, self.message)
            }
            None => self.message.clone(),
        }
    }

    /// A snippet of the file with the span underlined (empty when the file or
    /// line is unknown). The message and help are printed by the caller.
    pub fn snippet(&self, project_dir: &Path, color: bool) -> String {
        use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource};

        let source = self.location.as_ref().filter(|l| l.line > 0).and_then(|loc| {
            let text = std::fs::read_to_string(project_dir.join(&loc.file)).ok()?;
            let offset = byte_offset(&text, loc.line, loc.column)?;
            Some((NamedSource::new(loc.file.display().to_string(), text), offset))
        });
        let report = Report {
            message: self.headline(),
            help: self.help.clone(),
            source: source.as_ref().map(|(s, _)| s.clone()),
            span: source.as_ref().map(|(_, o)| miette::SourceSpan::new((*o).into(), self.span_len)),
        };
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let mut out = String::new();
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        if source.is_none() || handler.render_report(&mut out, &report).is_err() {
            return String::new();
        }
        // Keep only the framed snippet: from its `╭─[` line to its `╰──` line.
        let lines: Vec<&str> = out.lines().collect();
        let start = lines.iter().position(|l| l.contains('╭')).unwrap_or(0);
        let end = lines.iter().rposition(|l| l.contains('╰')).map_or(lines.len(), |i| i + 1);
        lines[start..end.max(start)].join("\n")
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Byte offset of a 1-based (line, column) in `text`; column 0 means the line start.
pub fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let start: usize = text.split_inclusive('\n').take(line.checked_sub(1)?).map(str::len).sum();
    let line_text = text.get(start..)?.lines().next().unwrap_or("");
    let col_bytes: usize = line_text.chars().take(column.saturating_sub(1)).map(char::len_utf8).sum();
    Some(start + col_bytes)
}

/// 1-based (line, column) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[derive(Debug)]
struct Report {
    message: String,
    help: Option<String>,
    source: Option<miette::NamedSource<String>>,
    span: Option<miette::SourceSpan>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.span?;
        Some(Box::new(std::iter::once(miette::LabeledSpan::new_with_span(None, span))))
    }
}

/// The closest names to `wanted` among `candidates`, best first (for "did you mean").
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(wanted, c), c))
        .filter(|(s, _)| *s >= 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, c)| c.to_string()).collect()
}

/// "did you mean `a`, `b`?" or None.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let s = suggest(wanted, candidates);
    if s.is_empty() {
        return None;
    }
    let list: Vec<String> = s.iter().map(|c| format!("`{c}`")).collect();
    Some(format!("did you mean {}?", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let text = "select 1\nfrom é x\nwhere y";
        let off = byte_offset(text, 2, 8).unwrap();
        assert_eq!(&text[off..off + 1], "x");
        assert_eq!(line_col(text, off), (2, 8));
    }

    #[test]
    fn suggestions_rank_close_names() {
        let names = ["stg_accounts", "stg_users", "customers"];
        assert_eq!(suggest("stg_acounts", names), vec!["stg_accounts"]);
        assert!(suggest("zzz", names).is_empty());
    }
}
