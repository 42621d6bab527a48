//! A singular test: a SQL file under `tests/` whose rows are failures. It
//! is read from its file, not declared in YAML.

use super::kind::{Args, CheckKind, Registered, Scope};
use super::verdict::Measure;
use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, PartialEq)]
pub struct Custom {
    /// The query returning failing rows.
    pub sql: String,
}

impl Registered for Custom {
    const NAMES: &'static [&'static str] = &[];

    fn parse(args: &Args, _test: &str) -> Result<Self, Diagnostic> {
        Err(args.err("a custom check is a SQL file under `tests/`".into()))
    }

    fn describe(m: &Measure) -> String {
        format!("{} failing rows", m.failing_rows)
    }
}

impl CheckKind for Custom {
    fn own_query(&self, _at: &Scope) -> Option<String> {
        Some(format!("select count(*) as c, count(*) as f from ({}) failing", self.sql))
    }

    fn failing_rows(&self, _at: &Scope) -> Option<String> {
        Some(format!("select * from ({}) failing", self.sql))
    }
}
