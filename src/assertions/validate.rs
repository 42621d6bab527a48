//! Compile-time checks of a declared test against the schemas `compile`
//! knows: a test on a column that does not exist, a relationship to a model
//! that does not exist or an expression that does not type-check is a
//! project error at its YAML line, before any model runs (not a check that
//! fails after the models were built).

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::execution::SessionState;

use super::check::Assertion;
use crate::diagnostic::{Diagnostic, did_you_mean};

/// What compile knows of a relation a test names: None when there is no such
/// model, seed or source; `Some(None)` when it exists but its schema is not
/// known (a source no model reads is not registered).
pub type Lookup<'a> = &'a (dyn Fn(&str) -> Option<Option<SchemaRef>> + Sync);

/// Every problem with `a` (parsed from its declaration), given the checked
/// relation's `schema` (None: not known at compile time).
/// `test` is its name as written, for messages.
pub async fn validate(
    state: &SessionState,
    a: &Assertion,
    test: &str,
    schema: Option<&Schema>,
    other: Lookup<'_>,
) -> Vec<Diagnostic> {
    let at = |message: String| Diagnostic::error(message).at(&a.file, a.line, 0);
    let mut out = Vec::new();
    if let Some(schema) = schema {
        for c in a.kind.columns() {
            if let Some(d) = missing_column(schema, &c, &a.relation) {
                out.push(
                    at(format!("`{test}` checks column `{c}`, which `{}` does not have", a.relation))
                        .with_help(d),
                );
            }
        }
    }
    if let Some((to, wanted)) = a.kind.check().other() {
        match other(to) {
            None => {
                out.push(at(format!("`{test}` names `{to}`, which is no model, seed or source")).with_help(
                    "use to: ref('model') or to: source('name', 'table') with a name the project defines",
                ))
            }
            Some(Some(to_schema)) => {
                for c in wanted {
                    if let Some(d) = missing_column(&to_schema, &c, to) {
                        out.push(
                            at(format!("`{test}` reads column `{c}` of `{to}`, which it does not have"))
                                .with_help(d),
                        );
                    }
                }
            }
            Some(None) => {}
        }
    }
    // Conditions are planned against the relation, so a typo or a type error
    // is reported here, with the test's line.
    if schema.is_some() && out.is_empty() {
        let conditions = a.kind.check().conditions();
        for (what, cond) in conditions.into_iter().chain(a.filter.as_deref().map(|f| ("where", f))) {
            let sql = format!("SELECT 1 FROM {} WHERE ({cond})", a.relation_sql);
            if let Err(e) = crate::plan::plan_sql_in(state, &sql).await {
                out.push(
                    at(format!(
                        "`{test}`: the {what} `{cond}` does not plan: {}",
                        crate::plan::clean_message(&e)
                    ))
                    .with_help("it is a SQL condition on the relation's columns"),
                );
            }
        }
    }
    out
}

/// A help text when `schema` has no column `name`, None when it has.
fn missing_column(schema: &Schema, name: &str, relation: &str) -> Option<String> {
    if schema.field_with_name(name).is_ok() {
        return None;
    }
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    Some(
        did_you_mean(name, names.iter().copied())
            .unwrap_or_else(|| format!("`{relation}` has: {}", names.join(", "))),
    )
}
