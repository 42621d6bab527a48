//! `reconciliation: {measure, to, to_measure, to_where, by, tolerance}`: an
//! aggregate `measure` of this relation against `to_measure` of `to`, per
//! group of `by` columns (or overall). Failing rows: the groups whose
//! measures differ by more than `tolerance` (a group missing on one side
//! counts as 0 there).

use super::kind::{Args, CheckKind, Registered, Scope, relation_sql};
use super::verdict::Measure;
use crate::diagnostic::Diagnostic;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub measure: String,
    pub to: String,
    pub to_measure: String,
    pub to_filter: Option<String>,
    pub by: Vec<String>,
    pub tolerance: f64,
}

impl Registered for Reconciliation {
    const NAMES: &'static [&'static str] = &["reconciliation"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let need =
            |key: &str| args.text(key).ok_or_else(|| args.err(format!("`reconciliation` needs `{key}:`")));
        let to = need("to")?;
        Ok(Reconciliation {
            measure: need("measure")?,
            to: args.relation(&to)?,
            to_measure: args.text("to_measure").map_or_else(|| need("measure"), Ok)?,
            to_filter: args.text("to_where"),
            by: args.columns_arg("by").unwrap_or_default(),
            tolerance: args.float("tolerance").unwrap_or(0.0),
        })
    }

    fn describe(m: &Measure) -> String {
        format!("{} of {} groups differ", m.failing_rows, m.rows_checked)
    }
}

impl Reconciliation {
    /// One row per group: its `by` keys, `measure`, `to_measure` and their
    /// absolute `difference`.
    fn groups(&self, at: &Scope) -> String {
        let keys: Vec<String> = self.by.iter().map(|c| quote_ident(c)).collect();
        let list = keys.join(", ");
        let side = |m: &str, rel: &str, f: &str| match keys.is_empty() {
            true => format!("select cast({m} as double) as m from {rel} where {f}"),
            false => format!("select {list}, cast({m} as double) as m from {rel} where {f} group by {list}"),
        };
        let left = side(&self.measure, at.relation, &at.where_sql());
        let to_filter = self.to_filter.as_ref().map_or("true".to_string(), |f| format!("({f})"));
        let right = side(&self.to_measure, &relation_sql(&self.to), &to_filter);
        let diff =
            "a.m as measure, b.m as to_measure, abs(coalesce(a.m, 0) - coalesce(b.m, 0)) as difference";
        if keys.is_empty() {
            return format!("select {diff} from ({left}) a cross join ({right}) b");
        }
        let pick =
            keys.iter().map(|k| format!("coalesce(a.{k}, b.{k}) as {k}")).collect::<Vec<_>>().join(", ");
        let on = keys.iter().map(|k| format!("a.{k} = b.{k}")).collect::<Vec<_>>().join(" and ");
        format!("select {pick}, {diff} from ({left}) a full join ({right}) b on {on}")
    }
}

impl CheckKind for Reconciliation {
    fn columns(&self) -> Vec<String> {
        self.by.clone()
    }

    fn other(&self) -> Option<(&str, Vec<String>)> {
        Some((&self.to, self.by.clone()))
    }

    fn own_query(&self, at: &Scope) -> Option<String> {
        Some(format!(
            "select count(*) as c, count(*) filter (where difference > {}) as f from ({}) g",
            self.tolerance,
            self.groups(at)
        ))
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        Some(format!("select * from ({}) g where difference > {}", self.groups(at), self.tolerance))
    }
}
