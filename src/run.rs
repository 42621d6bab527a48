//! Execute a build plan (see [`crate::build_plan`]): what each step does.
//! The [executor](crate::executor) runs the steps in order and in parallel;
//! this module runs one: a source's checks (giving the verdict its readers
//! wait for, see [`SourceVerdicts`]), a node (a view planned, a checked view
//! staged and checked, a table written, audited on exactly the written files
//! and published only if no error-level check fails), and the bookkeeping
//! steps (releasing a staged view's rows, the warned duplicates no view
//! counted, failing rows left for later). A failed node's descendants are
//! skipped, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deltalake::protocol::SaveMode;
use futures::future::BoxFuture;
use serde::Serialize;
use tracing::{Instrument, info_span};

use crate::assertions::{CheckSet, Counted, Outcome, relation_sql};
use crate::audit::{Auditor, ModelAudit, blocking_summary, warning_summary};
use crate::build_plan::{self, BuildPlan, Options, Step};
use crate::compile::{Compiled, Node, seed_plan};
use crate::executor::{self, Runner, Skip, Slots, StepId};
use crate::materialize::{
    At, Audit, TableKeys, ToCount, WriteError, Written, open_table, plan_write, stage_view, write_table,
};
use crate::plan::sql_diagnostic;
use crate::project::Materialization;
use crate::verdicts::{SourceKey, SourceVerdicts, failed_source_message};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Error,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    pub unique_id: String,
    pub name: String,
    pub materialized: Materialization,
    pub status: Status,
    /// Rows and bytes written (None for views and ephemeral models).
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub files: Option<usize>,
    /// Delta table version published by this run.
    pub version: Option<u64>,
    pub execution_time: f64,
    /// Seconds from the start of the run to when the node was started / finished.
    pub started_at: f64,
    pub completed_at: f64,
    pub message: Option<String>,
}

/// Receives progress events; the CLI draws them (progress bar or plain lines).
pub trait Progress: Send + Sync {
    fn started(&self, name: &str);
    fn finished(&self, result: &NodeResult);
}

/// Plan and run `selected` nodes of `compiled`; with `auditor`, gate each on its checks.
pub async fn run(
    compiled: Arc<Compiled>,
    selected: &BTreeSet<String>,
    threads: usize,
    progress: Arc<dyn Progress>,
    auditor: Option<Arc<Auditor>>,
) -> Vec<NodeResult> {
    let options =
        Options { gate: auditor.is_some(), warn_error: auditor.as_ref().is_some_and(|a| a.warn_error) };
    let plan = Arc::new(build_plan::plan(&compiled, selected, options, compiled.engine.capabilities()));
    execute_plan(compiled, plan, threads, progress, auditor).await
}

/// Run `plan` (made for `compiled`): each selected node's result, in DAG order.
pub async fn execute_plan(
    compiled: Arc<Compiled>,
    plan: Arc<BuildPlan>,
    threads: usize,
    progress: Arc<dyn Progress>,
    auditor: Option<Arc<Auditor>>,
) -> Vec<NodeResult> {
    let missing = prepare_unselected(&compiled, &plan.selected).await;
    let builder = Arc::new(Builder {
        verdicts: Arc::new(SourceVerdicts::new(plan.source_checks.keys())),
        unclaimed: Mutex::new(plan.warned.by_source.keys().cloned().collect()),
        proven: Mutex::new(BTreeSet::new()),
        skipped_for_source: Mutex::new(BTreeMap::new()),
        collecting: AtomicBool::new(false),
        started: Instant::now(),
        compiled: compiled.clone(),
        plan: plan.clone(),
        auditor,
        progress: progress.clone(),
        missing,
    });
    let outputs = executor::execute(&plan.steps, threads, builder).await;
    let mut results: BTreeMap<String, NodeResult> =
        outputs.into_iter().flatten().flatten().map(|r| (r.name.clone(), r)).collect();
    // A step that never ended is a bug in the plan: say so, never drop the node.
    let never_ended: Vec<&String> = plan.selected.iter().filter(|n| !results.contains_key(*n)).collect();
    for name in never_ended {
        let why = "not run: an upstream task stopped on an internal error (see the log)";
        let r = result(&compiled.nodes[name], Status::Error, None, 0.0, Some(why.into()));
        progress.finished(&r);
        results.insert(name.clone(), r);
    }
    // Report in DAG order.
    compiled.dag.topo_order().filter_map(|n| results.remove(n)).collect()
}

/// What runs a build plan's steps, and what they share during the run.
struct Builder {
    compiled: Arc<Compiled>,
    plan: Arc<BuildPlan>,
    auditor: Option<Arc<Auditor>>,
    progress: Arc<dyn Progress>,
    /// Unselected stored nodes never published on this target.
    missing: BTreeSet<String>,
    verdicts: Arc<SourceVerdicts>,
    /// Sources whose warned duplicates no step has checked yet.
    unclaimed: Mutex<BTreeSet<SourceKey>>,
    /// Sources whose verdict the footers proved: their scans are still to run.
    proven: Mutex<BTreeSet<SourceKey>>,
    /// Nodes skipped as they were about to start, because a source failed.
    skipped_for_source: Mutex<BTreeMap<String, SourceKey>>,
    /// Failing rows are being collected in the background.
    collecting: AtomicBool,
    started: Instant,
}

/// A step's output: a node's result (None for the other steps).
type Output = Option<NodeResult>;

impl Runner<Step> for Builder {
    type Output = Output;

    fn run(
        self: &Arc<Self>,
        _: StepId,
        step: &Step,
        slots: Arc<Slots>,
    ) -> BoxFuture<'static, (Output, bool)> {
        let (me, step) = (self.clone(), step.clone());
        Box::pin(async move {
            match step {
                Step::Node(name) => {
                    let r = me.run_node(&name, &slots).instrument(info_span!("node", name = %name)).await;
                    let ok = r.status == Status::Success;
                    (Some(r), ok)
                }
                Step::CheckSource(key) => (None, me.check_source(&key).await),
                other => {
                    me.run_bookkeeping(other).await;
                    (None, true)
                }
            }
        })
    }

    fn skipped(&self, _: StepId, step: &Step, why: Skip) -> Output {
        let Step::Node(name) = step else { return None };
        let message = match (&self.plan.steps[why.root].step, why.parent == why.root) {
            (Step::CheckSource(key), true) => {
                let why =
                    self.verdicts.failed_now(std::slice::from_ref(key)).map(|(_, w)| w).unwrap_or_default();
                format!("skipped: {}", failed_source_message(key, &why))
            }
            (Step::CheckSource(key), false) => {
                format!("skipped: upstream source `{}.{}` failed its checks", key.0, key.1)
            }
            (Step::Node(root), _) => {
                match self.skipped_for_source.lock().ok().and_then(|s| s.get(root).cloned()) {
                    Some(key) => format!("skipped: upstream source `{}.{}` failed its checks", key.0, key.1),
                    None => format!("skipped: upstream `{root}` failed"),
                }
            }
            _ => "skipped".to_string(),
        };
        let r = result(&self.compiled.nodes[name], Status::Skipped, None, 0.0, Some(message));
        self.progress.finished(&r);
        Some(r)
    }

    fn crashed(&self, _: StepId, step: &Step) -> Output {
        let Step::Node(name) = step else { return None };
        let why = "internal error: this step crashed (see the log); please report it";
        let r = result(&self.compiled.nodes[name], Status::Error, None, 0.0, Some(why.into()));
        self.progress.finished(&r);
        Some(r)
    }

    fn background(&self) -> Option<Step> {
        let deferred = self.auditor.as_ref().is_some_and(|a| a.has_deferred());
        (deferred && !self.collecting.swap(true, Ordering::SeqCst)).then_some(Step::CollectRows)
    }
}

impl Builder {
    fn auditor(&self) -> &Auditor {
        // The planner makes audit steps only for a gated build, which has one.
        self.auditor.as_deref().expect("a gated plan runs with an auditor")
    }

    /// Check one source and give its verdict as soon as it is known; whether
    /// it passed. When the Parquet footers prove it, before any scan, the
    /// scans, which only count what is reported, are left to
    /// [`Step::ScanSource`], which no reader waits for.
    async fn check_source(&self, key: &SourceKey) -> bool {
        let checks = &self.plan.source_checks[key];
        {
            let _stopped = self.verdicts.guard(key);
            let name = format!("{}.{}", key.0, key.1);
            let footers = self.plan.capabilities.footers;
            if footers && self.auditor().proven_unblocked(&self.compiled.engine, &name, checks.checks()).await
            {
                self.verdicts.give(key, None);
                if let Ok(mut p) = self.proven.lock() {
                    p.insert(key.clone());
                }
            } else {
                self.scan_source(key, checks).await;
            }
        }
        self.verdicts.failed_now(std::slice::from_ref(key)).is_none()
    }

    /// Run one source's checks and give the verdict (unless one was given),
    /// before the failing rows are stored, which no reader needs.
    async fn scan_source(&self, key: &SourceKey, checks: &CheckSet) {
        let give = |outcomes: &[Outcome]| self.verdicts.give(key, blocking_summary(outcomes));
        self.auditor().check_judged(&self.compiled.engine, checks.checks(), &Counted::new(), give).await;
    }

    /// Claim the warned duplicates of `key` to check them: None once claimed.
    fn claim(&self, key: &SourceKey) -> Option<&CheckSet> {
        let claimed = self.unclaimed.lock().is_ok_and(|mut p| p.remove(key));
        claimed.then(|| self.plan.warned.by_source.get(key).map(|(_, d)| d)).flatten()
    }

    /// The steps that only keep the run's books: they succeed, whatever they find.
    async fn run_bookkeeping(&self, step: Step) {
        let engine = &self.compiled.engine;
        match step {
            Step::ScanSource(key) => {
                let proven = self.proven.lock().is_ok_and(|p| p.contains(&key));
                if proven {
                    self.scan_source(&key, &self.plan.source_checks[&key]).await;
                }
            }
            Step::WarnedDuplicates(key) => {
                if let Some(checks) = self.claim(&key) {
                    self.auditor().check(engine, checks.checks()).await;
                }
            }
            Step::Release(view) => {
                tracing::debug!(view, "released");
                self.auditor().scratch.release(engine, &view);
            }
            Step::Finish => {
                // Warned duplicates whose view never counted them (it failed
                // before its checks, or was skipped) are queried now.
                let left = self.unclaimed.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
                for key in left {
                    if let Some((_, checks)) = self.plan.warned.by_source.get(&key) {
                        self.auditor().check(engine, checks.checks()).await;
                    }
                }
                self.auditor().collect_deferred(engine).await;
            }
            Step::CollectRows => {
                self.auditor().collect_deferred(engine).await;
                self.collecting.store(false, Ordering::SeqCst);
            }
            Step::Node(_) | Step::CheckSource(_) => {}
        }
    }

    /// Run one node, or refuse to start it (an upstream never built, a source
    /// that failed its checks); its result, reported.
    async fn run_node(&self, name: &str, slots: &Arc<Slots>) -> NodeResult {
        let c = &self.compiled;
        let node = &c.nodes[name];
        let refused = if let Some(m) = c.dag.ancestors(name).iter().find(|a| self.missing.contains(*a)) {
            let why = format!(
                "upstream `{m}` has never been built on this target; select it too, e.g. --select +{name}"
            );
            Some(result(node, Status::Error, None, 0.0, Some(why)))
        } else if let Some((source, why)) = self.verdicts.failed_now(&node.sources) {
            if let Ok(mut s) = self.skipped_for_source.lock() {
                s.insert(name.to_string(), source.clone());
            }
            Some(skipped_for_source(node, source, &why, 0.0))
        } else {
            None
        };
        if let Some(r) = refused {
            self.progress.finished(&r);
            return r;
        }
        self.progress.started(name);
        let started_at = self.started.elapsed().as_secs_f64();
        let start = Instant::now();
        let outcome = execute(self, name, slots).await;
        let secs = start.elapsed().as_secs_f64();
        let mut r = match (outcome, self.verdicts.failed_now(&node.sources)) {
            (Ok((w, note)), _) => result(node, Status::Success, w, secs, note),
            (Err(_), Some((source, why))) => skipped_for_source(node, source, &why, secs),
            (Err(e), None) => {
                let msg = e.to_string();
                let msg = match failing_source_file(c, node, &msg).await {
                    Some(file) => format!("{msg}\n{file}"),
                    None => msg,
                };
                result(node, Status::Error, None, secs, Some(msg))
            }
        };
        r.started_at = started_at;
        r.completed_at = self.started.elapsed().as_secs_f64();
        tracing::info!(node = %name, status = ?r.status, rows = ?r.rows, seconds = secs, "node finished");
        self.progress.finished(&r);
        r
    }
}

/// `node` published nothing because `source`, which it reads, failed its checks.
fn skipped_for_source(node: &Node, source: &SourceKey, why: &str, secs: f64) -> NodeResult {
    result(
        node,
        Status::Skipped,
        None,
        secs,
        Some(format!("skipped: {}", failed_source_message(source, why))),
    )
}

fn result(node: &Node, status: Status, w: Option<Written>, secs: f64, message: Option<String>) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id(),
        name: node.name.clone(),
        materialized: node.materialized,
        status,
        rows: w.map(|w| w.rows),
        bytes: w.map(|w| w.bytes),
        files: w.map(|w| w.files),
        version: w.map(|w| w.version),
        execution_time: secs,
        started_at: 0.0,
        completed_at: 0.0,
        message,
    }
}

/// Make unselected nodes resolve to what the warehouse holds: published tables
/// for stored nodes, re-planned views over those. Returns stored nodes that
/// have never been published.
pub async fn prepare_unselected(compiled: &Compiled, selected: &BTreeSet<String>) -> BTreeSet<String> {
    let mut missing = BTreeSet::new();
    for name in compiled.dag.topo_order() {
        if selected.contains(name) {
            continue;
        }
        let node = &compiled.nodes[name];
        if node.materialized.is_stored() {
            let url = compiled.target.table_url(name);
            match open_table(&compiled.engine, &url, At::Latest).await {
                Ok(Some(provider)) => {
                    if compiled.engine.register(name, provider).is_err() {
                        missing.insert(name.to_string());
                    }
                }
                _ => {
                    missing.insert(name.to_string());
                }
            }
        } else if let Ok(plan) = compiled.engine.plan_sql(&node.sql).await {
            let _ = compiled.engine.register_view(name, plan, &node.sql);
        }
    }
    missing
}

/// What a node's run leaves to report: what it wrote, and a note (warnings).
type Executed = (Option<Written>, Option<String>);

/// Why a node did not publish; its text is the node's message.
#[derive(Debug, thiserror::Error)]
enum NodeError {
    /// Its SQL or seed does not plan against what its parents hold now.
    #[error("{0}")]
    Plan(String),
    /// An error-level check failed: its own, or a source's it counts.
    #[error("{0}")]
    Checks(String),
    /// A source it reads failed its checks.
    #[error("{}", failed_source_message(.0, .1))]
    Source(SourceKey, String),
    /// The gate rejected its staged write.
    #[error(transparent)]
    Rejected(WriteError),
    /// The engine failed computing, staging or writing it.
    #[error("{0}")]
    Engine(String),
}

/// Run one node; on success the node resolves to its new data for dependents.
async fn execute(b: &Builder, name: &str, slots: &Arc<Slots>) -> Result<Executed, NodeError> {
    let c = &b.compiled;
    let node = &c.nodes[name];
    let engine = &c.engine;
    let plan = match node.materialized {
        Materialization::Seed => {
            seed_plan(&c.project, engine, node).await.map_err(|d| NodeError::Plan(d.headline()))?
        }
        _ => engine.plan_sql(&node.sql).await.map_err(|e| {
            let compiled_path = c.compiled_path(node).display().to_string();
            NodeError::Plan(
                sql_diagnostic(&node.path, &node.source_text, &node.sql, &e, &compiled_path).headline(),
            )
        })?,
    };
    if node.materialized.is_stored() {
        return write_node(b, node, plan, slots).await;
    }
    let checks = c.checks_of(name);
    let outcomes = match &b.auditor {
        Some(auditor) if !checks.is_empty() => match b.plan.staged.contains(name) {
            true => stage_and_check(b, auditor, node, plan).await?,
            false => {
                engine
                    .register_view(&node.name, plan, &node.sql)
                    .map_err(|e| NodeError::Engine(e.to_string()))?;
                auditor.check(engine, checks.checks()).await
            }
        },
        _ => {
            engine
                .register_view(&node.name, plan, &node.sql)
                .map_err(|e| NodeError::Engine(e.to_string()))?;
            return Ok((None, None));
        }
    };
    if let Some(why) = blocking_summary(&outcomes) {
        return Err(NodeError::Checks(why));
    }
    // Its readers start once it succeeds: only after its sources passed.
    if let Some((source, why)) = b.verdicts.failed(&node.sources, slots).await {
        return Err(NodeError::Source(source.clone(), why));
    }
    Ok((None, warning_summary(&outcomes)))
}

/// Compute a checked view's rows once (see [`stage_view`]), counting its
/// duplicates and those of the sources' warned duplicates it counts, and
/// check them; the outcomes that judge the view.
async fn stage_and_check(
    b: &Builder,
    auditor: &Auditor,
    node: &Node,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<Vec<Outcome>, NodeError> {
    let (c, name, engine) = (&b.compiled, node.name.as_str(), &b.compiled.engine);
    let checks = c.checks_of(name);
    let start = Instant::now();
    let sources = b.plan.warned.of_view(name);
    let mut tables: Vec<(&SourceKey, TableKeys)> = Vec::new();
    for (key, checks) in &sources {
        let source = relation_sql(&format!("{}.{}", key.0, key.1));
        for (columns, keep) in checks.keys_to_count() {
            tables.push((key, TableKeys { table: source.clone(), key: columns.clone(), keep: *keep }));
        }
    }
    let count = ToCount {
        own: checks.keys_to_count().to_vec(),
        tables: tables.iter().map(|(_, t)| t.clone()).collect(),
    };
    let readers = readers_of(c, name, auditor);
    let staged = stage_view(engine, name, plan, &readers, &auditor.scratch, &count).await.map_err(|e| {
        NodeError::Engine(format!("{}: {}", node.path.display(), crate::plan::clean_message(&e)))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    tracing::debug!(view = name, seconds, held_bytes = auditor.scratch.held(), "staged");
    let mut outcomes = auditor.check_counted(engine, checks.checks(), &staged.own).await;
    // The sources' checks counted here (queried where the plan did not
    // sort the source): one that cannot run blocks this reader.
    for (key, checks) in sources.into_iter().filter(|(key, _)| b.claim(key).is_some()) {
        let counted = tables
            .iter()
            .zip(&staged.tables)
            .filter(|((k, _), _)| *k == key)
            .filter_map(|((_, t), c)| Some((t.key.clone(), c.clone()?)))
            .collect();
        let checked = auditor.check_source_counted(engine, checks.checks(), &counted).await;
        outcomes.extend(checked.into_iter().filter(|o| o.blocks()));
    }
    Ok(outcomes)
}

/// Write a stored node's table; with the gate, audit the written files and
/// publish them only if they pass (and the sources it reads passed).
async fn write_node(
    b: &Builder,
    node: &Node,
    plan: datafusion::logical_expr::LogicalPlan,
    slots: &Arc<Slots>,
) -> Result<Executed, NodeError> {
    let (c, engine) = (&b.compiled, &b.compiled.engine);
    let schema = Arc::new(plan.schema().as_arrow().clone());
    // Written in the model's order; the gate's duplicates counted as the rows
    // pass, where they come in key order.
    let keys = match &b.auditor {
        Some(_) if b.plan.capabilities.count_keys => c.checks_of(&node.name).keys_to_count().to_vec(),
        _ => Vec::new(),
    };
    let (plan, written_keys) = plan_write(engine, plan, &keys).await.map_err(|e| {
        NodeError::Engine(format!("{}: {}", node.path.display(), crate::plan::clean_message(&e)))
    })?;
    let gate = b.auditor.clone().map(|auditor| {
        Arc::new(ModelAudit {
            compiled: c.clone(),
            auditor,
            model: node.name.clone(),
            schema,
            written_keys,
            sources: node.sources.clone(),
            verdicts: b.verdicts.clone(),
            slots: slots.clone(),
        })
    });
    let url = c.target.table_url(&node.name);
    let audit = gate.clone().map(|g| g as Arc<dyn Audit>);
    let published = match write_table(engine, &url, &node.name, plan, SaveMode::Overwrite, audit).await {
        Ok(published) => published,
        Err(e @ WriteError::Rejected(_)) => return Err(NodeError::Rejected(e)),
        Err(WriteError::Delta(e)) => {
            return Err(NodeError::Engine(failure_text(node, &url, &crate::materialize::error_text(&e))));
        }
    };
    let provider = open_table(engine, &url, At::Latest)
        .await
        .map_err(|e| NodeError::Engine(e.to_string()))?
        .ok_or_else(|| NodeError::Engine(format!("{url}: table vanished after writing")))?;
    engine.register(&node.name, provider).map_err(|e| NodeError::Engine(e.to_string()))?;
    Ok((Some(published.written), published.note))
}

/// Every query a build runs that reads `view`: its children, its own checks,
/// and the checks declared elsewhere that read it.
fn readers_of(compiled: &Compiled, view: &str, auditor: &Auditor) -> Vec<String> {
    let mut sql: Vec<String> = compiled
        .dag
        .children(view)
        .into_iter()
        .filter_map(|c| compiled.nodes.get(c))
        .map(|n| n.sql.clone())
        .collect();
    sql.extend(compiled.checks_of(view).checks().iter().map(crate::assertions::failing::one_query_sql));
    sql.extend(auditor.checks_naming(compiled, view).iter().cloned());
    sql
}

/// A failed write's message, located where the cause is known: a seed's
/// bad value at its CSV line, a damaged Delta log at the table's log.
fn failure_text(node: &Node, url: &url::Url, text: &str) -> String {
    if node.materialized == Materialization::Seed
        && let Some(line) = crate::compile::csv_error_line(text)
    {
        return format!("{}:{line}: {text}", node.path.display());
    }
    if text.starts_with("Kernel error")
        || text.contains("_delta_log")
        || text.contains("Invalid JSON in log record")
    {
        return format!(
            "{}: the Delta log of the published table at {url} cannot be read: {text} (restore the damaged commit under {url}_delta_log/, or delete the table folder to rebuild it)",
            node.path.display()
        );
    }
    format!("{}: {text}", node.path.display())
}

/// When a model failed reading its sources' data (a damaged page, a bad
/// checksum, a value its declared type cannot hold), which source and file
/// it was: DataFusion's error names neither.
async fn failing_source_file(compiled: &Compiled, node: &Node, message: &str) -> Option<String> {
    const READ_ERRORS: [&str; 6] = ["Parquet", "parquet", "Cast error", "Arrow schema", "CRC", "EOF"];
    if node.sources.is_empty() || !READ_ERRORS.iter().any(|p| message.contains(p)) {
        return None;
    }
    for key in &node.sources {
        let (url, schema) = compiled.sources.get(key)?;
        if let Some((file, why)) = compiled.engine.unreadable_file(url, schema).await {
            return Some(format!(
                "      source `{}.{}`: the file {file} cannot be read: {why}",
                key.0, key.1
            ));
        }
    }
    None
}
