//! A `tests:` / `data_tests:` entry -> [`Assertion`]. dbt's forms are accepted
//! unchanged: `- not_null`, `- accepted_values: {values: [...]}`, arguments
//! directly or under `arguments:`, and `config: {severity, where, warn_if,
//! error_if}` (or those keys at the top level, as older dbt wrote them).

use serde_yaml_ng::{Mapping, Value};

use super::check::{Assertion, Kind, Severity, Threshold};
use crate::diagnostic::Diagnostic;
use crate::project::TestDecl;

/// The test names [`parse`] knows (a package prefix, `dbt_utils.`, is dropped).
pub const KNOWN_TESTS: &[&str] = &[
    "not_null",
    "unique",
    "accepted_values",
    "relationships",
    "completeness",
    "duplicates",
    "unique_combination_of_columns",
    "row_count",
    "expression",
    "expression_is_true",
    "freshness",
    "reconciliation",
];

pub fn parse(relation: &str, relation_sql: &str, decl: &TestDecl) -> Result<Assertion, Diagnostic> {
    let a = Args::new(decl)?;
    a.check_ratios()?;
    let short = a.test.rsplit('.').next().unwrap_or(&a.test).to_string();
    let kind = a.kind(&short)?;
    let severity = match a.config("severity").and_then(|v| v.as_str()).map(str::to_ascii_lowercase).as_deref()
    {
        None | Some("error") => Severity::Error,
        Some("warn") => Severity::Warn,
        Some(other) => return Err(a.err(format!("severity `{other}`: use warn or error"))),
    };
    let threshold = |key: &str| -> Result<Threshold, Diagnostic> {
        match a.config(key).and_then(|v| v.as_str()) {
            None => Ok(Threshold::NONZERO),
            Some(t) => Threshold::parse(t)
                .ok_or_else(|| a.err(format!("{key}: `{t}` is not a comparison like \"!=0\" or \">10\""))),
        }
    };
    let cols = kind.columns().join("_");
    let name = [short.as_str(), relation, cols.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("_");
    let filter = a.config("where").or_else(|| a.inner("filter")).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Assertion {
        name: name.replace('.', "_"),
        relation: relation.to_string(),
        relation_sql: relation_sql.to_string(),
        kind,
        severity,
        filter,
        warn_if: threshold("warn_if")?,
        error_if: threshold("error_if")?,
        limit: a.config("limit").and_then(|v| v.as_u64()).map(|n| n as usize),
        file: decl.file.clone(),
        line: decl.line,
    })
}

/// A test declaration read as a name and its arguments (dbt's
/// `arguments:` and `config:` blocks, or the keys written beside them).
struct Args<'a> {
    decl: &'a TestDecl,
    test: String,
    args: Mapping,
}

impl<'a> Args<'a> {
    fn new(decl: &'a TestDecl) -> Result<Self, Diagnostic> {
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

    fn err(&self, msg: String) -> Diagnostic {
        Diagnostic::error(msg).at(&self.decl.file, self.decl.line, 0)
    }

    fn inner(&self, key: &str) -> Option<&Value> {
        self.args.get(key).or_else(|| self.args.get("arguments").and_then(|a| a.get(key)))
    }

    fn config(&self, key: &str) -> Option<&Value> {
        self.args.get("config").and_then(|c| c.get(key)).or_else(|| self.args.get(key))
    }

    fn text(&self, key: &str) -> Option<String> {
        self.inner(key).and_then(|v| v.as_str()).map(str::to_string)
    }

    fn column(&self) -> Option<String> {
        self.decl.column.clone().or_else(|| self.text("column_name"))
    }

    fn need_column(&self) -> Result<String, Diagnostic> {
        self.column().ok_or_else(|| {
            self.err(format!("`{}` needs a column: declare it under a column's `tests:`", self.test))
        })
    }

    fn columns_arg(&self, key: &str) -> Option<Vec<String>> {
        self.inner(key)
            .and_then(|v| v.as_sequence())
            .map(|s| s.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
    }

    fn float(&self, key: &str) -> Option<f64> {
        self.inner(key).and_then(|v| v.as_f64())
    }

    /// A ratio given as anything but a number in [0, 1] is a mistake, not a default.
    fn check_ratios(&self) -> Result<(), Diagnostic> {
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

    /// What the test asserts, by its name without a package (`dbt_utils.`).
    fn kind(&self, short: &str) -> Result<Kind, Diagnostic> {
        Ok(match short {
            "not_null" => Kind::Completeness { columns: vec![self.need_column()?], min_ratio: 1.0 },
            "completeness" => {
                let columns =
                    self.columns_arg("columns").map_or_else(|| self.need_column().map(|c| vec![c]), Ok)?;
                Kind::Completeness { columns, min_ratio: self.float("min_ratio").unwrap_or(1.0) }
            }
            "unique" => Kind::Duplicates { columns: vec![self.need_column()?], max_ratio: 0.0 },
            "duplicates" | "unique_combination_of_columns" => {
                let columns = self
                    .columns_arg("columns")
                    .or_else(|| self.columns_arg("combination_of_columns"))
                    .map_or_else(|| self.need_column().map(|c| vec![c]), Ok)?;
                Kind::Duplicates { columns, max_ratio: self.float("max_ratio").unwrap_or(0.0) }
            }
            "accepted_values" => self.accepted_values()?,
            "relationships" => self.relationships()?,
            "row_count" => self.row_count()?,
            "expression" | "expression_is_true" => self.expression()?,
            "freshness" => self.freshness()?,
            "reconciliation" => self.reconciliation()?,
            other => {
                let help = crate::diagnostic::did_you_mean(other, KNOWN_TESTS.iter().copied())
                    .unwrap_or_else(|| format!("tally runs {}", KNOWN_TESTS.join(", ")));
                return Err(self.err(format!("unknown test `{}`", self.test)).with_help(help));
            }
        })
    }

    fn accepted_values(&self) -> Result<Kind, Diagnostic> {
        let values = self
            .inner("values")
            .and_then(|v| v.as_sequence())
            .ok_or_else(|| self.err("`accepted_values` needs `values: [...]`".into()))?
            .iter()
            .map(sql_literal)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                self.err("`accepted_values`: values must be strings, numbers or booleans".into())
            })?;
        Ok(Kind::AcceptedValues { column: self.need_column()?, values })
    }

    fn relationships(&self) -> Result<Kind, Diagnostic> {
        let to =
            self.text("to").ok_or_else(|| self.err("`relationships` needs `to: ref('model')`".into()))?;
        let field = self.text("field").ok_or_else(|| self.err("`relationships` needs `field:`".into()))?;
        Ok(Kind::Relationships { column: self.need_column()?, to: self.relation(&to)?, field })
    }

    /// `ref('model')` or `source('name', 'table')`, as a relation name.
    fn relation(&self, to: &str) -> Result<String, Diagnostic> {
        relation_of(to)
            .ok_or_else(|| self.err(format!("`to: {to}`: use ref('model') or source('name', 'table')")))
    }

    fn row_count(&self) -> Result<Kind, Diagnostic> {
        let bound = |key: &str| match self.inner(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.err(format!("`row_count.{key}` must be a whole number of rows, not `{}`", yaml_text(v)))
            }),
        };
        let (min, max) = (bound("min")?, bound("max")?);
        if min.is_none() && max.is_none() {
            return Err(self.err("`row_count` needs `min:`, `max:` or both".into()));
        }
        Ok(Kind::RowCount { min, max })
    }

    fn expression(&self) -> Result<Kind, Diagnostic> {
        let expr = match (&self.decl.spec, self.inner("expression")) {
            (_, Some(Value::String(e))) => e.clone(),
            (Value::Mapping(m), _) => m
                .values()
                .next()
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| self.err("`expression` needs a SQL condition".into()))?,
            _ => return Err(self.err("`expression` needs a SQL condition".into())),
        };
        Ok(Kind::Expression { expr })
    }

    fn freshness(&self) -> Result<Kind, Diagnostic> {
        // No column: the model's upstream sources' loads (see `compile::upstream_loads`).
        let column = self.text("column").or_else(|| self.column()).unwrap_or_default();
        let hours = |key: &str| -> Result<Option<f64>, Diagnostic> {
            let Some(b) = self.inner(key) else { return Ok(None) };
            let count = b
                .get("count")
                .and_then(|c| c.as_f64())
                .ok_or_else(|| self.err(format!("`{key}` needs `count:`")))?;
            let per = match b.get("period").and_then(|p| p.as_str()).unwrap_or("hour") {
                "minute" => 1.0 / 60.0,
                "hour" => 1.0,
                "day" => 24.0,
                p => return Err(self.err(format!("`{key}.period: {p}`: use minute, hour or day"))),
            };
            Ok(Some(count * per))
        };
        let upstream = match self.inner("upstream").and_then(|v| v.as_sequence()) {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|v| v.as_str().and_then(relation_of).filter(|r| r.contains('.')))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    self.err("`freshness.upstream`: list sources as source('name', 'table')".into())
                })?,
        };
        Ok(Kind::Freshness {
            column,
            upstream,
            warn_after_hours: hours("warn_after")?,
            error_after_hours: hours("error_after")?,
        })
    }

    fn reconciliation(&self) -> Result<Kind, Diagnostic> {
        let need =
            |key: &str| self.text(key).ok_or_else(|| self.err(format!("`reconciliation` needs `{key}:`")));
        let to = need("to")?;
        Ok(Kind::Reconciliation {
            measure: need("measure")?,
            to: self.relation(&to)?,
            to_measure: self.text("to_measure").map_or_else(|| need("measure"), Ok)?,
            to_filter: self.text("to_where"),
            by: self.columns_arg("by").unwrap_or_default(),
            tolerance: self.float("tolerance").unwrap_or(0.0),
        })
    }
}

/// A YAML scalar as a SQL literal.
fn sql_literal(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(format!("'{}'", s.replace('\'', "''"))),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `ref('x')` -> `x`; `source('s', 't')` -> `s.t`.
fn relation_of(text: &str) -> Option<String> {
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
fn yaml_text(v: &Value) -> String {
    serde_yaml_ng::to_string(v).map(|s| s.trim().to_string()).unwrap_or_default()
}
