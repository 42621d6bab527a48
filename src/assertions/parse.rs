//! A `tests:` / `data_tests:` entry -> [`Assertion`]. dbt's forms are accepted
//! unchanged: `- not_null`, `- accepted_values: {values: [...]}`, arguments
//! directly or under `arguments:`, and `config: {severity, where, warn_if,
//! error_if}` (or those keys at the top level, as older dbt wrote them).

use super::check::Assertion;
use super::kind::Args;
use super::kinds::Kind;
use super::verdict::{Severity, Threshold};
use crate::diagnostic::Diagnostic;
use crate::project::TestDecl;

pub fn parse(relation: &str, relation_sql: &str, decl: &TestDecl) -> Result<Assertion, Diagnostic> {
    let a = Args::new(decl)?;
    a.check_ratios()?;
    let short = a.test.rsplit('.').next().unwrap_or(&a.test).to_string();
    let kind = Kind::parse(&short, &a).unwrap_or_else(|| {
        let help = crate::diagnostic::did_you_mean(&short, Kind::known_tests())
            .unwrap_or_else(|| format!("tally runs {}", Kind::known_tests().collect::<Vec<_>>().join(", ")));
        Err(a.err(format!("unknown test `{}`", a.test)).with_help(help))
    })?;
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
