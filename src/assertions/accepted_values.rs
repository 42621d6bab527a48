//! `accepted_values: {values: [...]}`: non-null values outside the list fail.

use serde_yaml_ng::Value;

use super::kind::{Args, CheckKind, Registered, Scope};
use crate::diagnostic::Diagnostic;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedValues {
    pub column: String,
    /// SQL literals.
    pub values: Vec<String>,
}

impl Registered for AcceptedValues {
    const NAMES: &'static [&'static str] = &["accepted_values"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let values = args
            .inner("values")
            .and_then(|v| v.as_sequence())
            .ok_or_else(|| args.err("`accepted_values` needs `values: [...]`".into()))?
            .iter()
            .map(sql_literal)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                args.err("`accepted_values`: values must be strings, numbers or booleans".into())
            })?;
        Ok(AcceptedValues { column: args.need_column()?, values })
    }
}

impl AcceptedValues {
    fn outside(&self, at: &Scope) -> String {
        let c = quote_ident(&self.column);
        format!("{} and {c} is not null and {c} not in ({})", at.where_sql(), self.values.join(", "))
    }
}

impl CheckKind for AcceptedValues {
    fn columns(&self) -> Vec<String> {
        vec![self.column.clone()]
    }

    fn fused_failing(&self, at: &Scope) -> Option<String> {
        Some(format!("count(*) filter (where {})", self.outside(at)))
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        Some(format!("select * from {} where {}", at.relation, self.outside(at)))
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
