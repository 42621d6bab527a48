//! `not_null`, `completeness: {columns: [a, b], min_ratio: 0.95}`: the share
//! of rows with every checked column non-null. Failing rows: those with a
//! null in a checked column.

use super::kind::{Args, CheckKind, Registered, Scope, any_null};
use super::verdict::{Judged, Measure, Rules, share};
use crate::diagnostic::Diagnostic;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct Completeness {
    pub columns: Vec<String>,
    /// The share of complete rows must be at least this; 1 means dbt's count rules.
    pub min_ratio: f64,
}

impl Registered for Completeness {
    const NAMES: &'static [&'static str] = &["not_null", "completeness"];

    fn parse(args: &Args, test: &str) -> Result<Self, Diagnostic> {
        Ok(match test {
            "not_null" => Completeness { columns: vec![args.need_column()?], min_ratio: 1.0 },
            _ => Completeness {
                columns: args.columns_or_column(&["columns"])?,
                min_ratio: args.float("min_ratio").unwrap_or(1.0),
            },
        })
    }

    fn describe(m: &Measure) -> String {
        m.ratio_or_rows()
    }
}

impl CheckKind for Completeness {
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// Unfiltered, one column: `count(*) - count(c)`, which DataFusion
    /// answers from Parquet footers when nothing else needs the rows.
    fn fused_failing(&self, at: &Scope) -> Option<String> {
        Some(match (at.filter, self.columns.as_slice()) {
            (None, [column]) => format!("count(*) - count({})", quote_ident(column)),
            _ => format!("count(*) filter (where {} and ({}))", at.where_sql(), any_null(&self.columns)),
        })
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        Some(format!(
            "select * from {} where {} and ({})",
            at.relation,
            at.where_sql(),
            any_null(&self.columns)
        ))
    }

    fn judge(&self, rules: &Rules, rows_checked: u64, failing: u64) -> Judged {
        let complete = 1.0 - share(rows_checked, failing);
        match self.min_ratio < 1.0 {
            true => (rules.on_bound(complete < self.min_ratio), complete, format!(">= {}", self.min_ratio)),
            false => (rules.on_count(failing), complete, rules.count_threshold()),
        }
    }
}
