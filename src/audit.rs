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

use crate::assertions::{self, Assertion, Counted, Kind, Outcome, Severity, Status, Threshold, failing};
use crate::compile::{Compiled, SingularTest};
use crate::materialize::{Audit, IN_MEMORY_BYTES, Observed, Scratch};
use crate::plan::Engine;
use crate::project::TestDecl;
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
        Auditor {
            as_of_us: as_of_us(c).await,
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

    /// Check `relation` (reachable in SQL as `relation_sql`) against `decls`;
    /// the outcomes are recorded and returned. `upstream`: the relation's
    /// upstream loads (see [`upstream_loads`]), for freshness without a column.
    pub async fn check(
        &self,
        engine: &Engine,
        relation: &str,
        relation_sql: &str,
        decls: &[TestDecl],
        upstream: Option<&Upstream<'_>>,
    ) -> Vec<Outcome> {
        self.check_counted(engine, relation, relation_sql, decls, upstream, &Counted::new()).await
    }

    /// [`check`](Self::check), with duplicates already `counted` (see
    /// [`keys_to_count`]) taken as they are.
    pub async fn check_counted(
        &self,
        engine: &Engine,
        relation: &str,
        relation_sql: &str,
        decls: &[TestDecl],
        upstream: Option<&Upstream<'_>>,
        counted: &Counted,
    ) -> Vec<Outcome> {
        self.check_judged(engine, relation, relation_sql, decls, upstream, counted, |_| {}).await
    }

    /// Whether `relation`'s Parquet footers alone prove that none of `decls`
    /// blocks (see [`assertions::proven_unblocked`]): then its readers need
    /// not wait for the scans, which still run for the counts reported.
    pub async fn proven_unblocked(
        &self,
        engine: &Engine,
        relation: &str,
        relation_sql: &str,
        decls: &[TestDecl],
    ) -> bool {
        let start = Instant::now();
        let (parsed, unparsed) = prepare(relation, relation_sql, decls, None);
        let proven = unparsed.is_empty()
            && assertions::proven_unblocked(engine, &parsed, self.as_of_us, self.warn_error).await;
        let spent = start.elapsed();
        self.spent_us.fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
        tracing::debug!(relation, proven, seconds = spent.as_secs_f64(), "footers");
        proven
    }

    /// [`check_counted`](Self::check_counted), handing every outcome to
    /// `judged` as soon as the statuses are known: before the failing rows,
    /// which no verdict needs, are read and stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_judged(
        &self,
        engine: &Engine,
        relation: &str,
        relation_sql: &str,
        decls: &[TestDecl],
        upstream: Option<&Upstream<'_>>,
        counted: &Counted,
        judged: impl FnOnce(&[Outcome]),
    ) -> Vec<Outcome> {
        let (parsed, mut outcomes) = prepare(relation, relation_sql, decls, upstream);
        let unparsed = outcomes.clone();
        let own =
            self.run(engine, parsed, counted, |own| judged(&[unparsed, own.to_vec()].concat()), false).await;
        outcomes.extend(own);
        self.record(outcomes.clone());
        outcomes
    }

    /// [`check_counted`](Self::check_counted) of source `name`, whose files
    /// stay as they are for the whole run: the failing rows of the checks
    /// that only warn, which nothing waits for, are read later, by
    /// [`collect_deferred`](Self::collect_deferred), when a slot is free.
    pub async fn check_source_counted(
        &self,
        engine: &Engine,
        name: &str,
        decls: &[TestDecl],
        counted: &Counted,
    ) -> Vec<Outcome> {
        let (parsed, mut outcomes) = prepare(name, &assertions::relation_sql(name), decls, None);
        outcomes.extend(self.run(engine, parsed, counted, |_| {}, true).await);
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
        let evaluated = self.judge(engine, parsed, counted, judged, defer).await;
        self.spent_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        evaluated
    }

    async fn judge(
        &self,
        engine: &Engine,
        mut parsed: Vec<Assertion>,
        counted: &Counted,
        judged: impl FnOnce(&[Outcome]),
        defer: bool,
    ) -> Vec<Outcome> {
        dedupe_names(&mut parsed);
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
            let mut add = |name: &str, name_sql: &str, decls: &[TestDecl]| {
                for a in decls.iter().filter_map(|d| assertions::parse(name, name_sql, d).ok()) {
                    if let Some(other) = a.kind.other_relation() {
                        index.entry(other.to_string()).or_default().push(failing::one_query_sql(&a));
                    }
                }
            };
            for name in c.nodes.keys() {
                add(name, &quote_ident(name), c.project.tests_of(name));
            }
            for ((s, t), decl) in &c.project.sources {
                let name = format!("{s}.{t}");
                add(&name, &assertions::relation_sql(&name), &decl.tests);
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
        kind: Kind::Custom { sql: t.sql.clone() },
        severity: if t.warn { Severity::Warn } else { Severity::Error },
        filter: None,
        warn_if: Threshold::NONZERO,
        error_if: Threshold::NONZERO,
        limit: None,
        file: t.path.clone(),
        line: 1,
    }
}

/// Parse `relation`'s checks; a freshness check over upstream loads reads
/// them through `upstream`. Checks that cannot run come back as outcomes.
pub fn prepare(
    relation: &str,
    relation_sql: &str,
    decls: &[TestDecl],
    upstream: Option<&Upstream<'_>>,
) -> (Vec<Assertion>, Vec<Outcome>) {
    let mut parsed = Vec::new();
    let mut outcomes = Vec::new();
    for d in decls {
        match assertions::parse(relation, relation_sql, d) {
            Ok(mut a) => match &mut a.kind {
                Kind::Freshness { column, upstream: named, .. } if column.is_empty() => match upstream.and_then(|u| u(named)) {
                    Some(loads) => {
                        *column = UPSTREAM_LOADED_AT.to_string();
                        a.relation_sql = loads;
                        parsed.push(a);
                    }
                    None => outcomes.push(a.outcome(Err(format!("`freshness` on `{relation}` needs `column:`, or upstream sources with a `loaded_at_field`")))),
                },
                _ => parsed.push(a),
            },
            Err(diag) => outcomes.push(Outcome::invalid(relation, d, diag.headline())),
        }
    }
    (parsed, outcomes)
}

/// The duplicates checks of `decls` that can be counted before they run (on
/// every row: no `where`), as (key columns, duplicated keys to keep).
pub fn keys_to_count(relation: &str, decls: &[TestDecl]) -> Vec<(Vec<String>, usize)> {
    let mut keys: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for a in decls.iter().filter_map(|d| assertions::parse(relation, relation, d).ok()) {
        if let Kind::Duplicates { columns, .. } = &a.kind
            && a.filter.is_none()
        {
            let keep = keys.entry(columns.clone()).or_default();
            *keep = (*keep).max(a.rows_kept());
        }
    }
    keys.into_iter().collect()
}

/// A source's duplicates checks split from its other checks, as (others,
/// duplicates), when they can be counted while a view that sorts the source
/// runs (see [`TableKeys`](crate::materialize::TableKeys)): every one of them
/// warn-level, so that none holds back the source's readers, and on every row
/// (no `where`). Otherwise all of `decls` are others.
pub fn split_warned_duplicates(relation: &str, decls: &[TestDecl]) -> (Vec<TestDecl>, Vec<TestDecl>) {
    let (mut others, mut duplicates, mut all_warned) = (Vec::new(), Vec::new(), true);
    for d in decls {
        match assertions::parse(relation, relation, d) {
            Ok(a) if matches!(a.kind, Kind::Duplicates { .. }) => {
                all_warned &= a.severity == Severity::Warn && a.filter.is_none();
                duplicates.push(d.clone());
            }
            _ => others.push(d.clone()),
        }
    }
    if all_warned { (others, duplicates) } else { (decls.to_vec(), Vec::new()) }
}

/// Whether a query of `decls`' duplicates checks would also answer one of
/// its completeness checks (of the same key, on every row: see
/// [`completeness_by_key`](assertions::completeness_by_key)).
pub fn duplicates_answer_completeness(relation: &str, decls: &[TestDecl]) -> bool {
    let parsed: Vec<Assertion> =
        decls.iter().filter_map(|d| assertions::parse(relation, relation, d).ok()).collect();
    let all: Vec<usize> = (0..parsed.len()).collect();
    !assertions::completeness_by_key(&parsed, &all, &Counted::new()).is_empty()
}

/// Every check of the project as the one query dbt would run for it (the
/// number of failing rows; a row count; the newest instant for freshness):
/// (relation, check name, SQL). `tally compile` writes them under
/// `target/compiled/assertions/`, for debugging a check by hand and for
/// running the checks on another engine (bench/).
pub fn one_queries(c: &Compiled) -> Vec<(String, String, String)> {
    let queries = |relation: &str, mut parsed: Vec<Assertion>| {
        dedupe_names(&mut parsed);
        parsed
            .iter()
            .map(|a| (relation.to_string(), a.name.clone(), failing::one_query_sql(a)))
            .collect::<Vec<_>>()
    };
    // Relations are independent: on all cores (30,000 checks in the
    // 10,000-model compile benchmark).
    let sources = c.project.sources.par_iter().flat_map_iter(|((s, t), decl)| {
        let relation = format!("{s}.{t}");
        queries(&relation, prepare(&relation, &assertions::relation_sql(&relation), &decl.tests, None).0)
    });
    let models = c.nodes.par_iter().flat_map_iter(|(name, _)| {
        let upstream = |named: &[String]| upstream_loads(c, name, named);
        queries(name, prepare(name, &quote_ident(name), c.project.tests_of(name), Some(&upstream)).0)
    });
    let mut out: Vec<_> = sources.chain(models).collect();
    out.extend(queries("tests", c.singular_tests.iter().map(singular_assertion).collect()));
    out
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

/// The column [`upstream_loads`] yields.
const UPSTREAM_LOADED_AT: &str = "upstream_loaded_at";

/// The instant freshness is measured against (SPEC §3): with an `as_of` var,
/// the end of that day (UTC); with `freshness_as_of: latest_load`, the newest
/// load of any source (so synthetic or replayed data is judged against its
/// own clock); otherwise now.
pub async fn as_of_us(c: &Compiled) -> i64 {
    let vars = &c.project.vars;
    let end_of_as_of = vars
        .get("as_of")
        .and_then(|v| v.as_str())
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros());
    if let Some(t) = end_of_as_of {
        return t;
    }
    if vars.get("freshness_as_of").and_then(|v| v.as_str()) == Some("latest_load") {
        let loads = loads_sql(c, c.sources.keys());
        let newest = if loads.is_empty() {
            Ok(None)
        } else {
            single_timestamp(&c.engine, &format!("select max(newest) from ({loads}) n")).await
        };
        match newest {
            Ok(Some(newest)) => return newest,
            Ok(None) => eprintln!(
                "warning: freshness_as_of: latest_load, but no source has a loaded_at_field value; measuring against now"
            ),
            Err(e) => eprintln!(
                "warning: freshness_as_of: latest_load: cannot read the sources' newest loads ({e}); measuring against now"
            ),
        }
    }
    chrono::Utc::now().timestamp_micros()
}

/// `select max(<loaded_at_field>) as newest from <source>`, unioned over
/// `sources` that declare a loaded_at_field ("" when none does).
fn loads_sql<'a>(c: &Compiled, sources: impl Iterator<Item = &'a (String, String)>) -> String {
    let parts: Vec<String> = sources
        .filter_map(|key| {
            let field = c.project.sources.get(key)?.loaded_at_field.as_ref()?;
            Some(format!(
                "select max({}) as newest from {}",
                quote_ident(field),
                assertions::relation_sql(&format!("{}.{}", key.0, key.1))
            ))
        })
        .collect();
    parts.join(" union all ")
}

/// Given the sources a freshness check names (may be empty), the relation
/// SQL of their loads; see [`upstream_loads`].
pub type Upstream<'a> = dyn Fn(&[String]) -> Option<String> + Send + Sync + 'a;

/// A model's upstream loads, as a one-row relation: the oldest of the newest
/// loads of the sources it reads (directly or through its ancestors), so its
/// freshness is that of its stalest input. Only the sources in `named` count,
/// or, when none are named, those with a freshness check of their own (a
/// monthly table without one would otherwise always look stale). None when no
/// such source declares a `loaded_at_field`.
pub fn upstream_loads(c: &Compiled, model: &str, named: &[String]) -> Option<String> {
    let mut nodes = c.dag.ancestors(model);
    nodes.insert(model.to_string());
    let sources: std::collections::BTreeSet<&(String, String)> = nodes
        .iter()
        .filter_map(|n| c.nodes.get(n))
        .flat_map(|n| &n.sources)
        .filter(|key| {
            let name = format!("{}.{}", key.0, key.1);
            if named.is_empty() {
                c.project.sources.get(*key).is_some_and(|s| s.tests.iter().any(TestDecl::is_freshness))
            } else {
                named.contains(&name)
            }
        })
        .collect();
    let loads = loads_sql(c, sources.into_iter());
    (!loads.is_empty())
        .then(|| format!("(select min(newest) as {UPSTREAM_LOADED_AT} from ({loads}) n) upstream"))
}

async fn single_timestamp(engine: &Engine, sql: &str) -> Result<Option<i64>, String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
    let clean = |e: datafusion::error::DataFusionError| crate::plan::clean_message(&e);
    let df =
        engine.ctx.sql(&format!("select cast(t as timestamp) from ({sql}) as x(t)")).await.map_err(clean)?;
    let Some(batch) = df.collect().await.map_err(clean)?.into_iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let col =
        datafusion::arrow::compute::cast(batch.column(0), &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| e.to_string())?;
    let ts = col.as_primitive_opt::<TimestampMicrosecondType>().ok_or("not a timestamp")?;
    Ok((!ts.is_null(0)).then(|| ts.value(0)))
}

/// The publish gate's audit of one model: its checks on exactly the files
/// the commit would add.
pub struct ModelAudit {
    pub compiled: Arc<Compiled>,
    pub auditor: Arc<Auditor>,
    pub model: String,
    /// The staged data's schema, for a write that produced no file.
    pub schema: SchemaRef,
    /// Duplicates counted on the rows as they were written, by key columns
    /// (see [`plan_write`](crate::materialize::plan_write)).
    pub written_keys: Vec<(Vec<String>, Observed)>,
    /// What the checks found, once the gate has run.
    pub outcomes: Mutex<Vec<Outcome>>,
    /// The checked sources the model reads, whose verdicts it waits for.
    pub sources: Vec<SourceKey>,
    pub verdicts: Arc<SourceVerdicts>,
}

impl ModelAudit {
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The model's own checks on the staged `files`.
    async fn own_checks(&self, files: Vec<Url>) -> Result<(), String> {
        let engine = &self.compiled.engine;
        let staged = format!("__tally_staged__{}", self.model);
        let decls = self.compiled.project.tests_of(&self.model);
        if decls.is_empty() {
            return Ok(());
        }
        engine
            .register_files(&staged, &files, self.schema.clone())
            .await
            .map_err(|e| format!("cannot read the staged files: {}", crate::plan::clean_message(&e)))?;
        let upstream = |named: &[String]| upstream_loads(&self.compiled, &self.model, named);
        let counted: Counted = self
            .written_keys
            .iter()
            .filter_map(|(key, found)| Some((key.clone(), found.lock().ok()?.clone()?)))
            .collect();
        let outcomes = self
            .auditor
            .check_counted(engine, &self.model, &quote_ident(&staged), decls, Some(&upstream), &counted)
            .await;
        engine.deregister(&staged);
        let verdict = blocking_summary(&outcomes);
        if let Ok(mut o) = self.outcomes.lock() {
            *o = outcomes;
        }
        match verdict {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

impl Audit for ModelAudit {
    fn audit(&self, files: Vec<Url>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.own_checks(files).await?;
            // The sources were checked while the model ran: publish only if they passed.
            match self.verdicts.failed(&self.sources).await {
                Some((source, why)) => Err(failed_source_message(source, &why)),
                None => Ok(()),
            }
        })
    }
}
