//! `expression: "amount >= 0"` (and dbt_utils' `expression_is_true`): rows
//! where the condition is false fail.

use serde_yaml_ng::Value;

use super::kind::{Args, CheckKind, Registered, Scope};
use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    /// A SQL condition on the relation's columns.
    pub expr: String,
}

impl Registered for Expression {
    const NAMES: &'static [&'static str] = &["expression", "expression_is_true"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let missing = || args.err("`expression` needs a SQL condition".into());
        let expr = match (&args.decl.spec, args.inner("expression")) {
            (_, Some(Value::String(e))) => e.clone(),
            (Value::Mapping(m), _) => {
                m.values().next().and_then(|v| v.as_str()).map(str::to_string).ok_or_else(missing)?
            }
            _ => return Err(missing()),
        };
        Ok(Expression { expr })
    }
}

impl Expression {
    fn false_on(&self, at: &Scope) -> String {
        format!("{} and (({})) is false", at.where_sql(), self.expr)
    }
}

impl CheckKind for Expression {
    fn conditions(&self) -> Vec<(&'static str, &str)> {
        vec![("expression", self.expr.as_str())]
    }

    fn fused_failing(&self, at: &Scope) -> Option<String> {
        Some(format!("count(*) filter (where {})", self.false_on(at)))
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        Some(format!("select * from {} where {}", at.relation, self.false_on(at)))
    }
}
