//! The assert stage: run a relation's declared checks, judge them, keep what
//! failed. `tally test` audits published tables; `tally build` audits each
//! stored model's staged files through the [publish gate](crate::materialize::Audit)
//! before they become visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use rayon::prelude::*;
use url::Url;

use crate::assertions::{
    self, Assertion, CheckError, CheckSet, Counted, Custom, Kind, Outcome, Severity, Status, Threshold,
    failing,
};
use crate::compile::{Compiled, SingularTest};
use crate::executor::Slots;
use crate::materialize::{Audit, IN_MEMORY_BYTES, Passed, Rejected, Scratch, StagedWrite, WrittenKeys};
use crate::plan::Engine;
use crate::render::quote_ident;
use crate::verdicts::{SourceKey, SourceVerdicts, failed_source_message};

/// Run-wide settings and every outcome of the run.
pub struct Auditor {
    /// Freshness is measured against this instant (µs since the epoch, UTC).
    pub as_of_us: i64,
    /// `--warn-error`: a warning fails like an error.
    pub warn_error: bool,
    /// `<warehouse>/_audit/<run_id>/`: failing rows, one Parquet file per check.
    pub dir: Url,
    /// Checked views' rows for this run (see
    /// [`stage_view`](crate::materialize::stage_view)).
    pub scratch: Scratch,
    outcomes: Mutex<Vec<Outcome>>,
    /// relation -> SQL of the checks declared elsewhere that read it (see
    /// [`Auditor::checks_naming`]); indexed on first use.
    naming: OnceLock<BTreeMap<String, Vec<String>>>,
    /// Time spent evaluating checks and collecting failing rows, summed over
    /// every check call (µs; calls on different models may overlap).
    spent_us: AtomicU64,
    /// Failing rows left for later (see [`Auditor::check_source_counted`]).
    deferred: Mutex<Vec<Deferred>>,
    /// What the command should tell the user before the checks run.
    pub warnings: Vec<String>,
}

/// A warning's failing rows, not read yet: what [`failing::collect`] needs.
struct Deferred {
    assertion: Assertion,
    shown: Vec<String>,
    outcome: Outcome,
    duplicated_keys: Vec<RecordBatch>,
}

impl Auditor {
    pub async fn new(c: &Compiled, run_id: &str, warn_error: bool) -> Auditor {
        let (as_of_us, warning) = as_of_us(c).await;
        Auditor {
            as_of_us,
            warnings: warning.into_iter().collect(),
            warn_error,
            dir: c.target.audit_url(run_id),
            scratch: Scratch::new(
                c.project.dir.join(&c.project.target_path).join("scratch").join(run_id),
                IN_MEMORY_BYTES,
            ),
            outcomes: Mutex::new(Vec::new()),
            naming: OnceLock::new(),
            spent_us: AtomicU64::new(0),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// Seconds spent in checks so far (summed over concurrent models).
    pub fn seconds(&self) -> f64 {
        self.spent_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Every outcome so far, in the order the checks ran.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Run `checks` (each names its relation in SQL); the outcomes are
    /// recorded and returned.
    pub async fn check(&self, engine: &Engine, checks: &[Assertion]) -> Vec<Outcome> {
        self.check_counted(engine, checks, &Counted::new()).await
    }

    /// [`check`](Self::check), with duplicates already `counted` (see
    /// [`CheckSet::keys_to_count`]) taken as they are.
    pub async fn check_counted(
        &self,
        engine: &Engine,
        checks: &[Assertion],
        counted: &Counted,
    ) -> Vec<Outcome> {
        self.check_judged(engine, checks, counted, |_| {}).await
    }

    /// Whether the relation's Parquet footers alone prove that none of
    /// `checks` blocks (see [`assertions::proven_unblocked`]): then its
    /// readers need not wait for the scans, which still run for the counts
    /// reported.
    pub async fn proven_unblocked(&self, engine: &Engine, relation: &str, checks: &[Assertion]) -> bool {
        let start = Instant::now();
        let proven = assertions::proven_unblocked(engine, checks, self.as_of_us, self.warn_error).await;
        let spent = start.elapsed();
        self.spent_us.fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
        tracing::debug!(relation, proven, seconds = spent.as_secs_f64(), "footers");
        proven
    }

    /// [`check_counted`](Self::check_counted), handing every outcome to
    /// `judged` as soon as the statuses are known: before the failing rows,
    /// which no verdict needs, are read and stored.
    pub async fn check_judged(
        &self,
        engine: &Engine,
        checks: &[Assertion],
        counted: &Counted,
        judged: impl FnOnce(&[Outcome]),
    ) -> Vec<Outcome> {
        let outcomes = self.run(engine, checks.to_vec(), counted, judged, false).await;
        self.record(outcomes.clone());
        outcomes
    }

    /// [`check_counted`](Self::check_counted) of a source, whose files stay
    /// as they are for the whole run: the failing rows of the checks that
    /// only warn, which nothing waits for, are read later, by
    /// [`collect_deferred`](Self::collect_deferred), when a slot is free.
    pub async fn check_source_counted(
        &self,
        engine: &Engine,
        checks: &[Assertion],
        counted: &Counted,
    ) -> Vec<Outcome> {
        let outcomes = self.run(engine, checks.to_vec(), counted, |_| {}, true).await;
        self.record(outcomes.clone());
        outcomes
    }

    /// Whether failing rows wait for [`collect_deferred`](Self::collect_deferred).
    pub fn has_deferred(&self) -> bool {
        self.deferred.lock().is_ok_and(|d| !d.is_empty())
    }

    /// Read and store the failing rows left for later, and add them to the
    /// outcomes recorded.
    pub async fn collect_deferred(&self, engine: &Engine) {
        let start = Instant::now();
        let deferred = self.deferred.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default();
        for Deferred { assertion, shown, mut outcome, duplicated_keys } in deferred {
            self.collect(engine, &assertion, &shown, &mut outcome, duplicated_keys).await;
            if let Ok(mut all) = self.outcomes.lock()
                && let Some(recorded) =
                    all.iter_mut().find(|o| o.name == outcome.name && o.relation == outcome.relation)
            {
                *recorded = outcome;
            }
        }
        self.spent_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Evaluate parsed assertions, judge them and keep their failing rows
    /// (with `defer`, a warning's later); returns the outcomes (recorded by the caller).
    async fn run(
        &self,
        engine: &Engine,
        parsed: Vec<Assertion>,
        counted: &Counted,
        judged: impl FnOnce(&[Outcome]),
        defer: bool,
    ) -> Vec<Outcome> {
        let start = Instant::now();
        let evaluated = assertions::evaluate(engine, &parsed, self.as_of_us, counted).await;
        let (mut outcomes, mut duplicated_keys): (Vec<Outcome>, Vec<_>) =
            evaluated.into_iter().map(|e| (e.outcome, e.duplicated_keys)).unzip();
        for o in outcomes.iter_mut().filter(|o| self.warn_error && o.status == Status::Warn) {
            o.status = Status::Fail;
            o.message.get_or_insert_with(|| "a warning, failed by --warn-error".to_string());
        }
        judged(&outcomes);
        let key = key_columns(&parsed);
        for ((a, o), keys) in parsed.into_iter().zip(&mut outcomes).zip(&mut duplicated_keys) {
            if o.status != Status::Pass && o.status != Status::Error {
                let mut shown = key.clone();
                shown.extend(a.kind.columns().into_iter().filter(|c| !key.contains(c)));
                let duplicated_keys = std::mem::take(keys);
                if defer
                    && o.status == Status::Warn
                    && let Ok(mut d) = self.deferred.lock()
                {
                    d.push(Deferred { assertion: a, shown, outcome: o.clone(), duplicated_keys });
                } else {
                    self.collect(engine, &a, &shown, o, duplicated_keys).await;
                }
            }
        }
        self.spent_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        outcomes
    }

    async fn collect(
        &self,
        engine: &Engine,
        a: &Assertion,
        shown: &[String],
        o: &mut Outcome,
        duplicated_keys: Vec<RecordBatch>,
    ) {
        let start = Instant::now();
        failing::collect(engine, a, shown, o, &self.dir, duplicated_keys).await;
        tracing::debug!(check = %a.name, seconds = start.elapsed().as_secs_f64(), "failing rows");
    }

    /// Run singular tests (SQL files under `tests/`) on what the warehouse holds.
    pub async fn check_singular(&self, engine: &Engine, tests: &[&SingularTest]) -> Vec<Outcome> {
        let parsed = tests.iter().map(|t| singular_assertion(t)).collect();
        let outcomes = self.run(engine, parsed, &Counted::new(), |_| {}, false).await;
        self.record(outcomes.clone());
        outcomes
    }

    /// The one-query SQL of every check that reads `relation` but is declared
    /// elsewhere: relationships and reconciliations naming it, singular tests
    /// that ref it.
    pub fn checks_naming(&self, c: &Compiled, relation: &str) -> &[String] {
        let index = self.naming.get_or_init(|| {
            let mut index: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for a in c.checks.values().flat_map(CheckSet::checks) {
                if let Some(other) = a.kind.other_relation() {
                    index.entry(other.to_string()).or_default().push(failing::one_query_sql(a));
                }
            }
            for t in &c.singular_tests {
                for r in t.refs.iter().collect::<std::collections::BTreeSet<_>>() {
                    index.entry(r.clone()).or_default().push(t.sql.clone());
                }
            }
            index
        });
        index.get(relation).map(Vec::as_slice).unwrap_or_default()
    }

    /// Record outcomes computed elsewhere (a relation that could not be checked).
    pub fn record(&self, outcomes: Vec<Outcome>) {
        if let Ok(mut all) = self.outcomes.lock() {
            all.extend(outcomes);
        }
    }
}

/// A singular test as an assertion: its rows are failures; it is attributed
/// to the first model it reads (else source, else "tests").
pub fn singular_assertion(t: &SingularTest) -> Assertion {
    Assertion {
        name: t.name.clone(),
        relation: t
            .refs
            .first()
            .cloned()
            .or_else(|| t.sources.first().map(|(s, n)| format!("{s}.{n}")))
            .unwrap_or_else(|| "tests".into()),
        relation_sql: String::new(),
        kind: Kind::Custom(Custom { sql: t.sql.clone() }),
        severity: if t.warn { Severity::Warn } else { Severity::Error },
        filter: None,
        warn_if: Threshold::NONZERO,
        error_if: Threshold::NONZERO,
        limit: None,
        file: t.path.clone(),
        line: 1,
    }
}

/// Every check of the project as the one query dbt would run for it (the
/// number of failing rows; a row count; the newest instant for freshness):
/// (relation, check name, SQL). `tally compile` writes them under
/// `target/compiled/assertions/`, for debugging a check by hand and for
/// running the checks on another engine (bench/).
pub fn one_queries(c: &Compiled) -> Vec<(String, String, String)> {
    // 30,000 checks in the 10,000-model compile benchmark: on all cores.
    let mut out: Vec<(String, String, String)> = c
        .checks
        .par_iter()
        .flat_map_iter(|(relation, set)| {
            set.checks().iter().map(|a| (relation.clone(), a.name.clone(), failing::one_query_sql(a)))
        })
        .collect();
    let singular = CheckSet::new(c.singular_tests.iter().map(singular_assertion).collect());
    out.extend(
        singular.checks().iter().map(|a| ("tests".to_string(), a.name.clone(), failing::one_query_sql(a))),
    );
    out
}

/// The relation's key, to show failing rows by: the columns of its first
/// uniqueness check.
fn key_columns(parsed: &[Assertion]) -> Vec<String> {
    parsed
        .iter()
        .find_map(|a| match &a.kind {
            Kind::Duplicates(d) => Some(d.columns.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A one-line account of the blocking outcomes, for the node's message.
pub fn blocking_summary(outcomes: &[Outcome]) -> Option<String> {
    summarize(outcomes, Outcome::blocks, "assertion(s) failed")
}

/// A one-line account of the warnings, for a published node's message.
pub fn warning_summary(outcomes: &[Outcome]) -> Option<String> {
    summarize(outcomes, |o| o.status == Status::Warn, "warning(s)")
}

/// "2 <what>: a (3 of 10 rows); b (...)" over the outcomes `pick` keeps, or None.
fn summarize(outcomes: &[Outcome], pick: impl Fn(&Outcome) -> bool, what: &str) -> Option<String> {
    let picked: Vec<String> =
        outcomes.iter().filter(|o| pick(o)).map(|o| format!("{} ({})", o.name, o.describe())).collect();
    (!picked.is_empty()).then(|| format!("{} {what}: {}", picked.len(), picked.join("; ")))
}

/// The instant freshness is measured against (SPEC §3): with an `as_of` var,
/// the end of that day (UTC); with `freshness_as_of: latest_load`, the newest
/// load of any source (so synthetic or replayed data is judged against its
/// own clock); otherwise now, with a warning when `latest_load` was asked for.
pub async fn as_of_us(c: &Compiled) -> (i64, Option<String>) {
    let vars = &c.project.vars;
    let end_of_as_of = vars
        .get("as_of")
        .and_then(|v| v.as_str())
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros());
    if let Some(t) = end_of_as_of {
        return (t, None);
    }
    let now = chrono::Utc::now().timestamp_micros();
    if vars.get("freshness_as_of").and_then(|v| v.as_str()) == Some("latest_load") {
        let loads = crate::compile::loads_sql(&c.project, c.sources.keys());
        let newest = if loads.is_empty() {
            Ok(None)
        } else {
            single_timestamp(&c.engine, &format!("select max(newest) from ({loads}) n")).await
        };
        let warning = match newest {
            Ok(Some(newest)) => return (newest, None),
            Ok(None) => "freshness_as_of: latest_load, but no source has a loaded_at_field value; measuring against now".to_string(),
            Err(e) => format!("freshness_as_of: latest_load: cannot read the sources' newest loads ({e}); measuring against now"),
        };
        return (now, Some(warning));
    }
    (now, None)
}

async fn single_timestamp(engine: &Engine, sql: &str) -> Result<Option<i64>, CheckError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
    let batches = engine.collect(&format!("select cast(t as timestamp) from ({sql}) as x(t)")).await?;
    let Some(batch) = batches.into_iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let col =
        datafusion::arrow::compute::cast(batch.column(0), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    let ts = col.as_primitive_opt::<TimestampMicrosecondType>().ok_or(CheckError::from("not a timestamp"))?;
    Ok((!ts.is_null(0)).then(|| ts.value(0)))
}

/// The publish gate's audit of one model: its checks on the table as the
/// commit would leave it (see [`StagedWrite::after_commit`]).
pub struct ModelAudit {
    pub compiled: Arc<Compiled>,
    pub auditor: Arc<Auditor>,
    pub model: String,
    /// The staged data's schema, for a write that produced no file.
    pub schema: SchemaRef,
    /// Duplicates counted on the rows as they were written, by key columns
    /// (see [`plan_write`](crate::materialize::plan_write)).
    pub written_keys: WrittenKeys,
    /// The checked sources the model reads, whose verdicts it waits for.
    pub sources: Vec<SourceKey>,
    pub verdicts: Arc<SourceVerdicts>,
    /// Where the wait for those verdicts parks (it holds no thread).
    pub slots: Arc<Slots>,
}

impl ModelAudit {
    /// The model's own checks on the table as `staged` would leave it.
    async fn own_checks(&self, staged: &StagedWrite) -> Result<Passed, Rejected> {
        let engine = &self.compiled.engine;
        let alias = format!("__tally_staged__{}", self.model);
        let checks = self.compiled.checks_of(&self.model);
        if checks.is_empty() {
            return Ok(Passed::default());
        }
        // Resolvable only while this audit runs.
        let staged_files = engine
            .register_files_for_step(&alias, &staged.after_commit(), self.schema.clone())
            .await
            .map_err(|e| Rejected {
                reason: format!("cannot read the staged files: {}", crate::plan::clean_message(&e)),
            })?;
        // Keys counted as the rows were written describe the table only when
        // the write replaces every row; otherwise the checks count them.
        let counted: Counted = match staged.replaces_all() {
            true => self
                .written_keys
                .iter()
                .filter_map(|(key, found)| Some((key.clone(), found.lock().ok()?.clone()?)))
                .collect(),
            false => Counted::new(),
        };
        let on = checks.on(&quote_ident(staged_files.name()));
        let outcomes = self.auditor.check_counted(engine, &on, &counted).await;
        drop(staged_files);
        match blocking_summary(&outcomes) {
            Some(reason) => Err(Rejected { reason }),
            None => Ok(Passed { note: warning_summary(&outcomes) }),
        }
    }
}

impl Audit for ModelAudit {
    fn audit<'a>(&'a self, staged: &'a StagedWrite) -> BoxFuture<'a, Result<Passed, Rejected>> {
        Box::pin(async move {
            let passed = self.own_checks(staged).await?;
            // The sources were checked while the model ran: publish only if they passed.
            match self.verdicts.failed(&self.sources, &self.slots).await {
                Some((source, why)) => Err(Rejected { reason: failed_source_message(source, &why) }),
                None => Ok(passed),
            }
        })
    }
}
