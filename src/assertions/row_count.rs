//! `row_count: {min, max}`: the relation's rows (within its `where`) must lie
//! within the bounds. Judged on the relation as a whole: no failing rows.

use super::kind::{Args, CheckKind, Registered, yaml_text};
use super::verdict::{Judged, Measure, Rules};
use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, PartialEq)]
pub struct RowCount {
    pub min: Option<u64>,
    pub max: Option<u64>,
}

impl Registered for RowCount {
    const NAMES: &'static [&'static str] = &["row_count"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let bound = |key: &str| match args.inner(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                args.err(format!("`row_count.{key}` must be a whole number of rows, not `{}`", yaml_text(v)))
            }),
        };
        let (min, max) = (bound("min")?, bound("max")?);
        if min.is_none() && max.is_none() {
            return Err(args.err("`row_count` needs `min:`, `max:` or both".into()));
        }
        Ok(RowCount { min, max })
    }

    fn describe(m: &Measure) -> String {
        format!("{} rows (expected {})", m.rows_checked, m.threshold)
    }
}

impl CheckKind for RowCount {
    /// The fused scan's `count(*)` is all it needs.
    fn fused_failing(&self, _at: &super::kind::Scope) -> Option<String> {
        Some("0".into())
    }

    fn judge(&self, rules: &Rules, rows_checked: u64, _failing: u64) -> Judged {
        let out = self.min.is_some_and(|m| rows_checked < m) || self.max.is_some_and(|m| rows_checked > m);
        let bound = |b: Option<u64>| b.map(|m| m.to_string()).unwrap_or_default();
        (rules.on_bound(out), rows_checked as f64, format!("{}..{}", bound(self.min), bound(self.max)))
    }
}
