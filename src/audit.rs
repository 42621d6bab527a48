//! The assert stage: run a relation's declared checks, judge them, keep what
//! failed. `tally test` audits published tables; `tally build` audits each
//! stored model's staged files through the [publish gate](crate::materialize::Audit)
//! before they become visible.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use url::Url;

use crate::assertions::{self, failing, Assertion, Kind, Outcome, Status};
use crate::compile::Compiled;
use crate::materialize::Audit;
use crate::plan::Engine;
use crate::project::TestDecl;
use crate::render::quote_ident;

/// Failing rows stored per failed check unless its `limit` says otherwise.
pub const DEFAULT_FAILING_ROWS_LIMIT: usize = 1000;

/// Run-wide settings and every outcome of the run.
pub struct Auditor {
    /// Freshness is measured against this instant (µs since the epoch, UTC).
    pub as_of_us: i64,
    /// `--warn-error`: a warning fails like an error.
    pub warn_error: bool,
    /// `<warehouse>/_audit/<run_id>/`: failing rows, one Parquet file per check.
    pub dir: Url,
    outcomes: Mutex<Vec<Outcome>>,
}

impl Auditor {
    pub fn new(c: &Compiled, run_id: &str, warn_error: bool) -> Auditor {
        Auditor { as_of_us: as_of_us(c), warn_error, dir: c.target.audit_url(run_id), outcomes: Mutex::new(Vec::new()) }
    }

    /// Every outcome so far, in the order the checks ran.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Check `relation` (reachable in SQL as `relation_sql`) against `decls`;
    /// the outcomes are recorded and returned.
    pub async fn check(&self, engine: &Engine, relation: &str, relation_sql: &str, decls: &[TestDecl]) -> Vec<Outcome> {
        let mut parsed = Vec::new();
        let mut outcomes = Vec::new();
        for d in decls {
            match assertions::parse(relation, relation_sql, d) {
                Ok(a) => parsed.push(a),
                Err(diag) => outcomes.push(Outcome::invalid(relation, d, diag.headline())),
            }
        }
        dedupe_names(&mut parsed);
        let mut evaluated = assertions::evaluate(engine, &parsed, self.as_of_us).await;
        let key = key_columns(&parsed);
        for (a, o) in parsed.iter().zip(evaluated.iter_mut()) {
            if self.warn_error && o.status == Status::Warn {
                o.status = Status::Fail;
                o.message.get_or_insert_with(|| "a warning, failed by --warn-error".to_string());
            }
            if o.status != Status::Pass && o.status != Status::Error {
                let mut shown = key.clone();
                shown.extend(a.kind.columns().into_iter().filter(|c| !key.contains(c)));
                failing::collect(engine, a, &shown, o, &self.dir, a.limit.unwrap_or(DEFAULT_FAILING_ROWS_LIMIT)).await;
            }
        }
        outcomes.extend(evaluated);
        if let Ok(mut all) = self.outcomes.lock() {
            all.extend(outcomes.iter().cloned());
        }
        outcomes
    }

    /// Record outcomes computed elsewhere (a relation that could not be checked).
    pub fn record(&self, outcomes: Vec<Outcome>) {
        if let Ok(mut all) = self.outcomes.lock() {
            all.extend(outcomes);
        }
    }
}

/// Two checks of the same kind on the same columns get `_2`, `_3`... (dbt adds a hash).
fn dedupe_names(parsed: &mut [Assertion]) {
    let mut seen = BTreeMap::<String, usize>::new();
    for a in parsed.iter_mut() {
        let n = seen.entry(a.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            a.name = format!("{}_{n}", a.name);
        }
    }
}

/// The relation's key, to show failing rows by: the columns of its first
/// uniqueness check.
fn key_columns(parsed: &[Assertion]) -> Vec<String> {
    parsed
        .iter()
        .find_map(|a| match &a.kind {
            Kind::Duplicates { columns, .. } => Some(columns.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A one-line account of the blocking outcomes, for the node's message.
pub fn blocking_summary(outcomes: &[Outcome]) -> Option<String> {
    let blocking: Vec<String> = outcomes
        .iter()
        .filter(|o| o.blocks())
        .map(|o| match &o.message {
            Some(m) => format!("{} ({m})", o.name),
            None => format!("{} ({} of {} rows)", o.name, o.failing_rows, o.rows_checked),
        })
        .collect();
    (!blocking.is_empty()).then(|| format!("{} assertion(s) failed: {}", blocking.len(), blocking.join("; ")))
}

/// SPEC §3: with an `as_of` var, the end of that day (UTC); otherwise now.
pub fn as_of_us(c: &Compiled) -> i64 {
    c.project
        .vars
        .get("as_of")
        .and_then(|v| v.as_str())
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros())
}

/// The publish gate's audit of one model: its checks on exactly the files
/// the commit would add.
pub struct ModelAudit {
    pub compiled: Arc<Compiled>,
    pub auditor: Arc<Auditor>,
    pub model: String,
    /// The staged data's schema, for a write that produced no file.
    pub schema: SchemaRef,
    /// What the checks found, once the gate has run.
    pub outcomes: Mutex<Vec<Outcome>>,
}

impl ModelAudit {
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

impl Audit for ModelAudit {
    fn audit(&self, files: Vec<Url>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let engine = &self.compiled.engine;
            let staged = format!("__tally_staged__{}", self.model);
            let decls = self.compiled.project.models.get(&self.model).map(|m| m.tests.as_slice()).or_else(|| self.compiled.project.seeds.get(&self.model).map(|s| s.tests.as_slice())).unwrap_or_default();
            if decls.is_empty() {
                return Ok(());
            }
            engine.register_files(&staged, &files, self.schema.clone()).await.map_err(|e| format!("cannot read the staged files: {}", crate::plan::clean_message(&e)))?;
            let outcomes = self.auditor.check(engine, &self.model, &quote_ident(&staged), decls).await;
            engine.deregister(&staged);
            let verdict = blocking_summary(&outcomes);
            if let Ok(mut o) = self.outcomes.lock() {
                *o = outcomes;
            }
            match verdict {
                Some(why) => Err(why),
                None => Ok(()),
            }
        })
    }
}
