//! A check as tally runs it: what it asserts ([`Kind`]), how it is judged
//! ([`Threshold`], [`Severity`]) and what it found ([`Outcome`]).

use serde::Serialize;

/// Why a check could not run (its outcome is then `error`): a query that
/// does not plan or fails, a result of the wrong shape. Its text is what the
/// user reads, DataFusion's wrapping removed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(pub String);

impl From<String> for CheckError {
    fn from(s: String) -> Self {
        CheckError(s)
    }
}

impl From<&str> for CheckError {
    fn from(s: &str) -> Self {
        CheckError(s.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for CheckError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        CheckError(crate::plan::clean_message(&e))
    }
}

impl From<datafusion::arrow::error::ArrowError> for CheckError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        CheckError(e.to_string())
    }
}

/// Keys shown per failed check.
pub const SAMPLE_ROWS: usize = 5;

/// Failing rows stored per failed check unless its `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// The column a model's freshness check reads when it measures its upstream
/// sources' loads (a `freshness` with no `column:`).
pub const UPSTREAM_LOADED_AT: &str = "upstream_loaded_at";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Share of rows with every column non-null must be >= `min_ratio`.
    Completeness {
        columns: Vec<String>,
        min_ratio: f64,
    },
    /// (non-null keys - distinct non-null keys) / non-null keys must be <= `max_ratio`.
    Duplicates {
        columns: Vec<String>,
        max_ratio: f64,
    },
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
    Relationships {
        column: String,
        to: String,
        field: String,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    Expression {
        expr: String,
    },
    /// Hours from max(`column`) to the as_of instant, against dbt-style bounds.
    /// An empty `column` on a model means its upstream sources' loads: those
    /// named in `upstream` (`source.table`), else every upstream source with a
    /// freshness check of its own.
    Freshness {
        column: String,
        upstream: Vec<String>,
        warn_after_hours: Option<f64>,
        error_after_hours: Option<f64>,
    },
    /// An aggregate `measure` of this relation against `to_measure` of `to`,
    /// per group of `by` columns (or overall): groups differing by more than
    /// `tolerance` fail.
    Reconciliation {
        measure: String,
        to: String,
        to_measure: String,
        to_filter: Option<String>,
        by: Vec<String>,
        tolerance: f64,
    },
    /// A query returning failing rows (a singular test).
    Custom {
        sql: String,
    },
}

/// A check's kind without its arguments, as outcomes, reports and the
/// scorecard name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KindTag {
    Completeness,
    Duplicates,
    AcceptedValues,
    Relationships,
    RowCount,
    Expression,
    Freshness,
    Reconciliation,
    Custom,
}

impl KindTag {
    pub fn as_str(&self) -> &'static str {
        match self {
            KindTag::Completeness => "completeness",
            KindTag::Duplicates => "duplicates",
            KindTag::AcceptedValues => "accepted_values",
            KindTag::Relationships => "relationships",
            KindTag::RowCount => "row_count",
            KindTag::Expression => "expression",
            KindTag::Freshness => "freshness",
            KindTag::Reconciliation => "reconciliation",
            KindTag::Custom => "custom",
        }
    }
}

impl std::fmt::Display for KindTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Kind {
    pub fn name(&self) -> &'static str {
        self.tag().as_str()
    }

    /// Which kind it is, without its arguments: what an outcome records.
    pub fn tag(&self) -> KindTag {
        match self {
            Kind::Completeness { .. } => KindTag::Completeness,
            Kind::Duplicates { .. } => KindTag::Duplicates,
            Kind::AcceptedValues { .. } => KindTag::AcceptedValues,
            Kind::Relationships { .. } => KindTag::Relationships,
            Kind::RowCount { .. } => KindTag::RowCount,
            Kind::Expression { .. } => KindTag::Expression,
            Kind::Freshness { .. } => KindTag::Freshness,
            Kind::Reconciliation { .. } => KindTag::Reconciliation,
            Kind::Custom { .. } => KindTag::Custom,
        }
    }

    /// The other relation this check reads, if any.
    pub fn other_relation(&self) -> Option<&str> {
        match self {
            Kind::Relationships { to, .. } | Kind::Reconciliation { to, .. } => Some(to),
            _ => None,
        }
    }

    pub fn columns(&self) -> Vec<String> {
        match self {
            Kind::Completeness { columns, .. } | Kind::Duplicates { columns, .. } => columns.clone(),
            Kind::Freshness { column, .. } if column.is_empty() => Vec::new(),
            Kind::AcceptedValues { column, .. }
            | Kind::Relationships { column, .. }
            | Kind::Freshness { column, .. } => vec![column.clone()],
            Kind::Reconciliation { by, .. } => by.clone(),
            Kind::RowCount { .. } | Kind::Expression { .. } | Kind::Custom { .. } => Vec::new(),
        }
    }
}

/// A parsed, validated assertion on one relation.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// dbt-style: `<test>_<relation>_<columns>`.
    pub name: String,
    /// The model, seed or `source.table` it checks.
    pub relation: String,
    /// SQL that names the relation (a quoted identifier).
    pub relation_sql: String,
    pub kind: Kind,
    pub severity: Severity,
    /// Only rows matching this SQL condition are checked.
    pub filter: Option<String>,
    /// Count thresholds (dbt's `warn_if` / `error_if`, default `!= 0`).
    pub warn_if: Threshold,
    pub error_if: Threshold,
    /// At most this many failing rows are stored (dbt's `limit`).
    pub limit: Option<usize>,
    pub file: std::path::PathBuf,
    pub line: usize,
}

/// A comparison on the failing-row count, as dbt writes it: `!=0`, `>10`, `>=5`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    op: Op,
    value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Ne,
    Gt,
    Ge,
    Eq,
    Lt,
    Le,
}

impl Threshold {
    pub const NONZERO: Threshold = Threshold { op: Op::Ne, value: 0 };

    pub fn parse(s: &str) -> Option<Threshold> {
        let s = s.trim();
        let (op, rest) = [
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("==", Op::Eq),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (op, r)))?;
        Some(Threshold { op, value: rest.trim().parse().ok()? })
    }

    /// Whether a count that hits stays hit as it grows (`> n`, `>= n`, `!= 0`).
    pub fn is_monotonic(&self) -> bool {
        matches!(self.op, Op::Gt | Op::Ge) || (self.op == Op::Ne && self.value == 0)
    }

    pub fn hit(&self, n: u64) -> bool {
        match self.op {
            Op::Ne => n != self.value,
            Op::Gt => n > self.value,
            Op::Ge => n >= self.value,
            Op::Eq => n == self.value,
            Op::Lt => n < self.value,
            Op::Le => n <= self.value,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// The check could not run (e.g. a bad expression).
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub relation: String,
    pub kind: KindTag,
    pub columns: String,
    pub severity: Severity,
    pub status: Status,
    pub rows_checked: u64,
    pub failing_rows: u64,
    /// A ratio for completeness and duplicates, a count otherwise.
    pub observed: f64,
    pub threshold: String,
    pub message: Option<String>,
    /// A few failing rows, by key: `id=42, amount=null`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<String>,
    /// Where the failing rows were stored (Parquet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_rows_path: Option<String>,
    pub file: String,
    pub line: usize,
}

impl Outcome {
    /// Fails an error-level gate: a failed check, or one that could not run.
    pub fn blocks(&self) -> bool {
        matches!(self.status, Status::Fail | Status::Error)
    }

    /// What was found, in words: `3 of 100 rows`, `52.0 h since the newest row`...
    pub fn describe(&self) -> String {
        if let Some(m) = &self.message {
            return m.clone();
        }
        match self.kind {
            KindTag::Freshness => format!("{:.1} h since the newest row ({})", self.observed, self.threshold),
            KindTag::RowCount => format!("{} rows (expected {})", self.rows_checked, self.threshold),
            KindTag::Reconciliation => {
                format!("{} of {} groups differ", self.failing_rows, self.rows_checked)
            }
            KindTag::Custom => format!("{} failing rows", self.failing_rows),
            KindTag::Completeness | KindTag::Duplicates if !self.threshold.starts_with("failing") => {
                format!(
                    "{} of {} rows, ratio {:.4} (expected {})",
                    self.failing_rows, self.rows_checked, self.observed, self.threshold
                )
            }
            KindTag::Completeness
            | KindTag::Duplicates
            | KindTag::AcceptedValues
            | KindTag::Relationships
            | KindTag::Expression => format!("{} of {} rows", self.failing_rows, self.rows_checked),
        }
    }

    pub fn status_word(&self) -> &'static str {
        match self.status {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }
}

impl Assertion {
    /// Whether it reads its upstream sources' loads rather than its relation.
    pub fn reads_upstream_loads(&self) -> bool {
        matches!(&self.kind, Kind::Freshness { column, .. } if column == UPSTREAM_LOADED_AT)
    }

    /// How many failing rows are read for the console and stored: `limit`,
    /// else [`DEFAULT_LIMIT`], and never fewer than the console shows.
    pub fn rows_kept(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).max(SAMPLE_ROWS)
    }

    /// The outcome of this check from its (rows checked, failing rows), or
    /// `Err(why)` when it could not run.
    pub fn outcome(&self, counts: Result<(u64, u64), CheckError>) -> Outcome {
        let (status, rows_checked, failing_rows, observed, threshold, message) = match counts {
            Ok((checked, failing)) => {
                let (status, observed, threshold) = self.judge(checked, failing);
                (status, checked, failing, observed, threshold, None)
            }
            Err(e) => (Status::Error, 0, 0, 0.0, String::new(), Some(e.0)),
        };
        Outcome {
            name: self.name.clone(),
            relation: self.relation.clone(),
            kind: self.kind.tag(),
            columns: self.kind.columns().join(","),
            severity: self.severity,
            status,
            rows_checked,
            failing_rows,
            observed,
            threshold,
            message,
            sample: Vec::new(),
            failing_rows_path: None,
            file: self.file.display().to_string(),
            line: self.line,
        }
    }

    /// Judge counts against the thresholds: a ratio bound when the check has
    /// one, else dbt's `error_if` / `warn_if` on the failing count.
    pub fn judge(&self, rows_checked: u64, failing: u64) -> (Status, f64, String) {
        let share = if rows_checked == 0 { 0.0 } else { failing as f64 / rows_checked as f64 };
        let on_ratio = |failed: bool| if failed { self.failed_status() } else { Status::Pass };
        match &self.kind {
            Kind::Completeness { min_ratio, .. } if *min_ratio < 1.0 => {
                (on_ratio(1.0 - share < *min_ratio), 1.0 - share, format!(">= {min_ratio}"))
            }
            Kind::Completeness { .. } => (self.on_count(failing), 1.0 - share, self.count_threshold()),
            Kind::Duplicates { max_ratio, .. } if *max_ratio > 0.0 => {
                (on_ratio(share > *max_ratio), share, format!("<= {max_ratio}"))
            }
            Kind::Duplicates { .. } => (self.on_count(failing), share, self.count_threshold()),
            Kind::RowCount { min, max } => {
                let out = min.is_some_and(|m| rows_checked < m) || max.is_some_and(|m| rows_checked > m);
                let t = format!(
                    "{}..{}",
                    min.map(|m| m.to_string()).unwrap_or_default(),
                    max.map(|m| m.to_string()).unwrap_or_default()
                );
                (on_ratio(out), rows_checked as f64, t)
            }
            _ => (self.on_count(failing), failing as f64, self.count_threshold()),
        }
    }

    fn failed_status(&self) -> Status {
        match self.severity {
            Severity::Error => Status::Fail,
            Severity::Warn => Status::Warn,
        }
    }

    /// dbt: with severity error, `error_if` fails and `warn_if` warns; with severity warn, either warns.
    fn on_count(&self, failing: u64) -> Status {
        match (self.severity, self.error_if.hit(failing), self.warn_if.hit(failing)) {
            (Severity::Error, true, _) => Status::Fail,
            (Severity::Error, false, true) | (Severity::Warn, _, true) | (Severity::Warn, true, _) => {
                Status::Warn
            }
            _ => Status::Pass,
        }
    }

    fn count_threshold(&self) -> String {
        format!("failing {}", fmt_threshold(&self.error_if))
    }
}

fn fmt_threshold(t: &Threshold) -> String {
    let op = match t.op {
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Eq => "=",
        Op::Lt => "<",
        Op::Le => "<=",
    };
    format!("{op} {}", t.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert!(Threshold::parse("!=0").unwrap().hit(1));
        assert!(!Threshold::parse(">10").unwrap().hit(10));
        assert!(Threshold::parse(">= 5").unwrap().hit(5));
        assert!(Threshold::parse("abc").is_none());
    }
}
