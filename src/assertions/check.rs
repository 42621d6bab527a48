//! A check as tally runs it: what it asserts ([`Kind`]), where and how it
//! is judged ([`Scope`], [`Rules`]) and what it found ([`Outcome`]).

use serde::Serialize;

use super::freshness::lag_hours;
use super::kind::Scope;
use super::kinds::{Freshness, Kind, KindTag};
use super::verdict::{CheckError, Judged, Measure, Rules, Severity, Status, Threshold};

/// Keys shown per failed check.
pub const SAMPLE_ROWS: usize = 5;

/// Failing rows stored per failed check unless its `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// The column a model's freshness check reads when it measures its upstream
/// sources' loads (a `freshness` with no `column:`).
pub const UPSTREAM_LOADED_AT: &str = "upstream_loaded_at";

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
        self.kind.describe(&Measure {
            rows_checked: self.rows_checked,
            failing_rows: self.failing_rows,
            observed: self.observed,
            threshold: &self.threshold,
        })
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
        matches!(&self.kind, Kind::Freshness(f) if f.column == UPSTREAM_LOADED_AT)
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

    /// Where it looks: its relation and filter.
    pub fn scope(&self) -> Scope<'_> {
        Scope { relation: &self.relation_sql, filter: self.filter.as_deref() }
    }

    /// How it is judged: severity and count thresholds.
    pub fn rules(&self) -> Rules {
        Rules { severity: self.severity, warn_if: self.warn_if, error_if: self.error_if }
    }

    /// Judge counts as its kind does: a bound of the kind's own when it has
    /// one, else dbt's `error_if` / `warn_if` on the failing count.
    pub fn judge(&self, rows_checked: u64, failing: u64) -> Judged {
        self.kind.check().judge(&self.rules(), rows_checked, failing)
    }

    /// A freshness check's outcome from its row (rows checked, newest
    /// instant; see [`Freshness::newest_sql`]) at `as_of_us`.
    pub fn judge_freshness(
        &self,
        f: &Freshness,
        row: Result<Vec<i64>, CheckError>,
        as_of_us: i64,
    ) -> Outcome {
        let row = match row {
            Ok(r) => r,
            Err(e) => return self.outcome(Err(e)),
        };
        let mut o = self.outcome(Ok((row.first().copied().unwrap_or(0).max(0) as u64, 0)));
        o.observed = lag_hours(row.get(1).copied(), as_of_us);
        (o.status, o.threshold) = f.judge_lag(&self.rules(), o.observed);
        o
    }
}
