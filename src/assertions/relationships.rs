//! `relationships: {to: ref('x'), field: id}`: non-null keys with no parent
//! row in `to` fail.

use super::kind::{Args, CheckKind, Registered, Scope, relation_sql};
use crate::diagnostic::Diagnostic;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct Relationships {
    pub column: String,
    /// The parent relation (a model, seed or `source.table`).
    pub to: String,
    /// The parent's key column.
    pub field: String,
}

impl Registered for Relationships {
    const NAMES: &'static [&'static str] = &["relationships"];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        let to =
            args.text("to").ok_or_else(|| args.err("`relationships` needs `to: ref('model')`".into()))?;
        let field = args.text("field").ok_or_else(|| args.err("`relationships` needs `field:`".into()))?;
        Ok(Relationships { column: args.need_column()?, to: args.relation(&to)?, field })
    }
}

impl Relationships {
    /// Child rows (aliased `child`) with a key and no parent.
    fn orphans(&self, at: &Scope) -> String {
        let c = quote_ident(&self.column);
        format!(
            "{} child where {} and child.{c} is not null and not exists (select 1 from {} parent where parent.{} = child.{c})",
            at.relation,
            at.where_sql(),
            relation_sql(&self.to),
            quote_ident(&self.field)
        )
    }
}

impl CheckKind for Relationships {
    fn columns(&self) -> Vec<String> {
        vec![self.column.clone()]
    }

    fn other(&self) -> Option<(&str, Vec<String>)> {
        Some((&self.to, vec![self.field.clone()]))
    }

    fn own_query(&self, at: &Scope) -> Option<String> {
        let c = quote_ident(&self.column);
        Some(format!(
            "select (select count({c}) from {} where {}) as c, (select count(*) from {}) as f",
            at.relation,
            at.where_sql(),
            self.orphans(at)
        ))
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        Some(format!("select * from {}", self.orphans(at)))
    }
}
