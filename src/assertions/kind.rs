//! What every check kind provides, one file per kind (`completeness.rs`,
//! `duplicates.rs`...), listed once in the registry (`kinds.rs`):
//!
//! - [`Registered`]: the test names it is declared as, and how its YAML
//!   arguments ([`Args`]) parse into it; how its outcome reads in words;
//! - [`CheckKind`]: the columns it checks and the other relation it reads,
//!   the SQL it contributes to the one fused scan of its relation or runs on
//!   its own, the SQL of its failing rows, and how counts are judged.
//!
//! The evaluator ([`evaluate`](super::evaluate)) only asks these questions;
//! its in-process shortcuts (counting keys by hash, footers) are its own.

use serde_yaml_ng::{Mapping, Value};

use super::verdict::{Judged, Measure, Rules};
use crate::diagnostic::Diagnostic;
use crate::project::TestDecl;
use crate::render::quote_ident;

/// Where a check looks: the relation's SQL and the rows it keeps (`where`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// SQL that names the relation (a quoted identifier, or staged files' alias).
    pub relation: &'a str,
    pub filter: Option<&'a str>,
}

impl Scope<'_> {
    /// The filter as a SQL condition (`true` when every row is checked).
    pub fn where_sql(&self) -> String {
        self.filter.map_or("true".to_string(), |f| format!("({f})"))
    }
}

/// A check kind, as the evaluator, the failing-rows reader and the validator
/// ask it. Each method has a default for the kinds it does not apply to.
pub trait CheckKind: std::fmt::Debug {
    /// The checked relation's columns it names (its outcome's `columns`).
    fn columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// The other relation it reads (a model, seed or `source.table`), and
    /// the columns it reads there.
    fn other(&self) -> Option<(&str, Vec<String>)> {
        None
    }

    /// SQL conditions on the relation it holds, by what they are called
    /// (`expression`), planned at compile time so a typo is a compile error.
    fn conditions(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    /// Its failing count as an aggregate over the relation, when it can share
    /// the one fused scan (`count(*) filter (where ...)`).
    fn fused_failing(&self, _at: &Scope) -> Option<String> {
        None
    }

    /// Its query of its own, when it is not fused: one row of two bigints,
    /// rows checked `c` and failing rows `f`.
    fn own_query(&self, _at: &Scope) -> Option<String> {
        None
    }

    /// SQL returning its failing rows; None when it judges the relation as a
    /// whole (a row count, freshness).
    fn failing_rows(&self, _at: &Scope) -> Option<String> {
        None
    }

    /// Its status from (rows checked, failing rows): dbt's thresholds on the
    /// failing count unless the kind has a bound of its own.
    fn judge(&self, rules: &Rules, _rows_checked: u64, failing: u64) -> Judged {
        rules.judge_count(failing)
    }
}

/// How a kind is declared and reported: by the registry, not per check.
pub trait Registered: CheckKind + Sized {
    /// The test names it is declared as, without a package prefix
    /// (`dbt_utils.`); none for a kind that is not declared in YAML.
    const NAMES: &'static [&'static str];

    /// The kind from a declaration named `test` (one of [`Self::NAMES`]).
    fn parse(args: &Args, test: &str) -> Result<Self, Diagnostic>;

    /// What was found, in words.
    fn describe(m: &Measure) -> String {
        m.rows()
    }
}

/// A test declaration read as a name and its arguments (dbt's
/// `arguments:` and `config:` blocks, or the keys written beside them).
pub struct Args<'a> {
    pub decl: &'a TestDecl,
    /// As declared, with its package prefix.
    pub test: String,
    args: Mapping,
}

impl<'a> Args<'a> {
    pub fn new(decl: &'a TestDecl) -> Result<Self, Diagnostic> {
        let err = |msg: &str| Diagnostic::error(msg).at(&decl.file, decl.line, 0);
        let (test, args) = match &decl.spec {
            Value::String(name) => (name.clone(), Mapping::new()),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, v) = m.iter().next().ok_or_else(|| err("empty test entry"))?;
                let name = k.as_str().ok_or_else(|| err("a test name must be a string"))?.to_string();
                (name, v.as_mapping().cloned().unwrap_or_default())
            }
            _ => {
                return Err(err(
                    "a test is a name (`- unique`) or a one-key mapping (`- accepted_values: {values: [...]}`)",
                ));
            }
        };
        Ok(Args { decl, test, args })
    }

    pub fn err(&self, msg: String) -> Diagnostic {
        Diagnostic::error(msg).at(&self.decl.file, self.decl.line, 0)
    }

    /// An argument, given directly or under `arguments:`.
    pub fn inner(&self, key: &str) -> Option<&Value> {
        self.args.get(key).or_else(|| self.args.get("arguments").and_then(|a| a.get(key)))
    }

    /// A config key, under `config:` or beside the arguments (older dbt).
    pub fn config(&self, key: &str) -> Option<&Value> {
        self.args.get("config").and_then(|c| c.get(key)).or_else(|| self.args.get(key))
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.inner(key).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// The column it is declared under, or its `column_name:` argument.
    pub fn column(&self) -> Option<String> {
        self.decl.column.clone().or_else(|| self.text("column_name"))
    }

    pub fn need_column(&self) -> Result<String, Diagnostic> {
        self.column().ok_or_else(|| {
            self.err(format!("`{}` needs a column: declare it under a column's `tests:`", self.test))
        })
    }

    /// The list under `key`, else the column it is declared under.
    pub fn columns_or_column(&self, keys: &[&str]) -> Result<Vec<String>, Diagnostic> {
        match keys.iter().find_map(|k| self.columns_arg(k)) {
            Some(columns) => Ok(columns),
            None => self.need_column().map(|c| vec![c]),
        }
    }

    pub fn columns_arg(&self, key: &str) -> Option<Vec<String>> {
        self.inner(key)
            .and_then(|v| v.as_sequence())
            .map(|s| s.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        self.inner(key).and_then(|v| v.as_f64())
    }

    /// A ratio given as anything but a number in [0, 1] is a mistake, not a default.
    pub fn check_ratios(&self) -> Result<(), Diagnostic> {
        for key in ["min_ratio", "max_ratio", "tolerance"] {
            if let Some(v) = self.inner(key)
                && !v.as_f64().is_some_and(|f| f >= 0.0 && (key == "tolerance" || f <= 1.0))
            {
                return Err(self.err(format!(
                    "`{key}: {}` must be a number{}",
                    yaml_text(v),
                    if key == "tolerance" { " of at least 0" } else { " from 0 to 1" }
                )));
            }
        }
        Ok(())
    }

    /// `ref('model')` or `source('name', 'table')`, as a relation name.
    pub fn relation(&self, to: &str) -> Result<String, Diagnostic> {
        relation_of(to)
            .ok_or_else(|| self.err(format!("`to: {to}`: use ref('model') or source('name', 'table')")))
    }
}

/// `ref('x')` -> `x`; `source('s', 't')` -> `s.t`.
pub fn relation_of(text: &str) -> Option<String> {
    let t = text.trim();
    let args = |inner: &str| -> Vec<String> {
        inner.split(',').map(|a| a.trim().trim_matches(['\'', '"']).to_string()).collect()
    };
    if let Some(inner) = t.strip_prefix("ref(").and_then(|r| r.strip_suffix(')')) {
        return args(inner).last().cloned();
    }
    if let Some(inner) = t.strip_prefix("source(").and_then(|r| r.strip_suffix(')')) {
        let a = args(inner);
        return (a.len() == 2).then(|| format!("{}.{}", a[0], a[1]));
    }
    None
}

/// A YAML value as the user wrote it, roughly (for messages).
pub fn yaml_text(v: &Value) -> String {
    serde_yaml_ng::to_string(v).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// SQL for a relation name: a model or seed, or `source.table`.
pub fn relation_sql(name: &str) -> String {
    match name.split_once('.') {
        Some((s, t)) => format!("{}.{}", quote_ident(s), quote_ident(t)),
        None => quote_ident(name),
    }
}

/// `a is null or b is null`.
pub fn any_null(columns: &[String]) -> String {
    columns.iter().map(|c| format!("{} is null", quote_ident(c))).collect::<Vec<_>>().join(" or ")
}
