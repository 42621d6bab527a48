//! dbt's source `freshness:` with `loaded_at_field`, or `freshness: {column,
//! warn_after, error_after}`: hours from the newest row to the run's as-of
//! instant, against dbt-style bounds. An empty `column` on a model means its
//! upstream sources' loads (resolved at compile time, see
//! `compile::upstream_loads`). Judged on the relation as a whole.

use super::kind::{Args, CheckKind, Registered, Scope, relation_of};
use super::verdict::{Measure, Rules, Severity, Status};
use crate::diagnostic::Diagnostic;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub column: String,
    /// The upstream sources (`source.table`) whose loads it measures, when
    /// `column` is empty; none means every upstream source with a
    /// freshness check of its own.
    pub upstream: Vec<String>,
    pub warn_after_hours: Option<f64>,
    pub error_after_hours: Option<f64>,
}

impl Registered for Freshness {
    const NAMES: &'static [&'static str] = &["freshness"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let column = args.text("column").or_else(|| args.column()).unwrap_or_default();
        let hours = |key: &str| -> Result<Option<f64>, Diagnostic> {
            let Some(b) = args.inner(key) else { return Ok(None) };
            let count = b
                .get("count")
                .and_then(|c| c.as_f64())
                .ok_or_else(|| args.err(format!("`{key}` needs `count:`")))?;
            let per = match b.get("period").and_then(|p| p.as_str()).unwrap_or("hour") {
                "minute" => 1.0 / 60.0,
                "hour" => 1.0,
                "day" => 24.0,
                p => return Err(args.err(format!("`{key}.period: {p}`: use minute, hour or day"))),
            };
            Ok(Some(count * per))
        };
        let upstream = match args.inner("upstream").and_then(|v| v.as_sequence()) {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|v| v.as_str().and_then(relation_of).filter(|r| r.contains('.')))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    args.err("`freshness.upstream`: list sources as source('name', 'table')".into())
                })?,
        };
        Ok(Freshness {
            column,
            upstream,
            warn_after_hours: hours("warn_after")?,
            error_after_hours: hours("error_after")?,
        })
    }

    fn describe(m: &Measure) -> String {
        format!("{:.1} h since the newest row ({})", m.observed, m.threshold)
    }
}

impl CheckKind for Freshness {
    fn columns(&self) -> Vec<String> {
        match self.column.is_empty() {
            true => Vec::new(),
            false => vec![self.column.clone()],
        }
    }
}

impl Freshness {
    /// Its query: (rows checked `n`, the newest instant in microseconds
    /// `newest`), judged by [`Freshness::judge_lag`].
    pub fn newest_sql(&self, at: &Scope) -> String {
        format!(
            "select count(*) as n, cast(date_part('epoch', max({c})) * 1000000 as bigint) as newest from {} where {}",
            at.relation,
            at.where_sql(),
            c = quote_ident(&self.column)
        )
    }

    /// The status of a lag (hours since the newest row; infinite when there
    /// is none), and the bounds in words.
    pub fn judge_lag(&self, rules: &Rules, lag: f64) -> (Status, String) {
        let over = |h: &Option<f64>| h.is_some_and(|h| lag > h);
        let status = if over(&self.error_after_hours) && rules.severity == Severity::Error {
            Status::Fail
        } else if over(&self.warn_after_hours) || over(&self.error_after_hours) {
            Status::Warn
        } else {
            Status::Pass
        };
        let fmt = |h: &Option<f64>| h.map(|h| format!("{h}h")).unwrap_or_else(|| "-".into());
        (status, format!("warn > {}, error > {}", fmt(&self.warn_after_hours), fmt(&self.error_after_hours)))
    }
}

/// Hours from `newest` (microseconds since the epoch; `i64::MIN` for none)
/// to `as_of_us`: an empty relation is infinitely stale.
pub fn lag_hours(newest: Option<i64>, as_of_us: i64) -> f64 {
    match newest {
        Some(n) if n != i64::MIN => (as_of_us - n) as f64 / 3_600_000_000.0,
        _ => f64::INFINITY,
    }
}
