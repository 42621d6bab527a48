//! How a check is judged, whatever its kind: its severity and dbt's count
//! thresholds ([`Rules`]), the status they give ([`Status`]), and why a
//! check could not run ([`CheckError`]).

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Error,
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

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// A check's severity and dbt's `warn_if` / `error_if` on its failing count.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub severity: Severity,
    pub warn_if: Threshold,
    pub error_if: Threshold,
}

/// What a judge returns: the status, the observed value (a ratio, a count,
/// hours) and the threshold it was held to, in words.
pub type Judged = (Status, f64, String);

impl Rules {
    /// The status of a bound that was crossed (`failed`) or not.
    pub fn on_bound(&self, failed: bool) -> Status {
        match (failed, self.severity) {
            (false, _) => Status::Pass,
            (true, Severity::Error) => Status::Fail,
            (true, Severity::Warn) => Status::Warn,
        }
    }

    /// dbt: with severity error, `error_if` fails and `warn_if` warns; with severity warn, either warns.
    pub fn on_count(&self, failing: u64) -> Status {
        match (self.severity, self.error_if.hit(failing), self.warn_if.hit(failing)) {
            (Severity::Error, true, _) => Status::Fail,
            (Severity::Error, false, true) | (Severity::Warn, _, true) | (Severity::Warn, true, _) => {
                Status::Warn
            }
            _ => Status::Pass,
        }
    }

    pub fn count_threshold(&self) -> String {
        format!("failing {}", self.error_if)
    }

    /// dbt's judgement on the failing count; the observed value is that count.
    pub fn judge_count(&self, failing: u64) -> Judged {
        (self.on_count(failing), failing as f64, self.count_threshold())
    }
}

/// The share of `rows_checked` that is `failing` (0 of no rows).
pub fn share(rows_checked: u64, failing: u64) -> f64 {
    if rows_checked == 0 { 0.0 } else { failing as f64 / rows_checked as f64 }
}

/// What an outcome found, as a kind describes it in words.
pub struct Measure<'a> {
    pub rows_checked: u64,
    pub failing_rows: u64,
    pub observed: f64,
    pub threshold: &'a str,
}

impl Measure<'_> {
    /// `3 of 100 rows`.
    pub fn rows(&self) -> String {
        format!("{} of {} rows", self.failing_rows, self.rows_checked)
    }

    /// `3 of 100 rows, ratio 0.0300 (expected <= 0.05)` when judged on a
    /// ratio, else as [`Measure::rows`].
    pub fn ratio_or_rows(&self) -> String {
        match self.threshold.starts_with("failing") {
            true => self.rows(),
            false => format!(
                "{} of {} rows, ratio {:.4} (expected {})",
                self.failing_rows, self.rows_checked, self.observed, self.threshold
            ),
        }
    }
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
        assert_eq!(Threshold::parse(">=5").unwrap().to_string(), ">= 5");
    }

    #[test]
    fn dbt_severity_rules() {
        let rules = |severity, warn_if: &str, error_if: &str| Rules {
            severity,
            warn_if: Threshold::parse(warn_if).unwrap(),
            error_if: Threshold::parse(error_if).unwrap(),
        };
        let r = rules(Severity::Error, ">0", ">10");
        assert_eq!(r.on_count(0), Status::Pass);
        assert_eq!(r.on_count(5), Status::Warn);
        assert_eq!(r.on_count(11), Status::Fail);
        assert_eq!(rules(Severity::Warn, "!=0", "!=0").on_count(11), Status::Warn);
    }
}
