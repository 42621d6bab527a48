//! Execute the selected part of the DAG: independent nodes in parallel (up to
//! `threads` at once), each node only after its selected parents succeeded.
//! A failed node's descendants are skipped, with the reason.
//!
//! With an [`Auditor`] (`tally build`), each source's checks are a task of
//! their own; the nodes reading the source start with it and wait for its
//! verdict before they publish (see [`SourceVerdicts`]), and those reading a
//! failed source publish nothing and are skipped. When the source's Parquet
//! footers prove the verdict, it comes before any scan (see
//! [`proven_unblocked`](crate::assertions::proven_unblocked)), and the scans,
//! which then only count what is reported, wait like any work no one waits
//! for: until no node is ready. (Its warn-level duplicates checks hold back
//! no reader: see [`WarnedDuplicates`].) Each node's checks gate it: a stored
//! node is written, audited on exactly the written files and published only
//! if no error-level check fails. A checked view's rows are computed once,
//! checked, and read by the rest of the run (see [`stage_view`]); they are
//! released once no node left reads them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use crate::assertions::{Counted, Outcome, relation_sql};
use crate::audit::{
    Auditor, ModelAudit, blocking_summary, duplicates_answer_completeness, split_warned_duplicates,
    warning_summary,
};
use crate::compile::{Compiled, Node, seed_plan};
use crate::materialize::{
    At, Audit, TableKeys, ToCount, Written, open_table, plan_write, stage_view, write_table,
};
use crate::plan::sql_diagnostic;
use crate::project::{Materialization, TestDecl};
use crate::render::quote_ident;
use crate::verdicts::{SourceKey, SourceVerdicts, failed_source_message};
use deltalake::protocol::SaveMode;

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

/// Run `selected` nodes of `compiled`; with `auditor`, gate each on its checks.
pub async fn run(
    compiled: Arc<Compiled>,
    selected: &BTreeSet<String>,
    threads: usize,
    progress: Arc<dyn Progress>,
    auditor: Option<Arc<Auditor>>,
) -> Vec<NodeResult> {
    let run_start = Instant::now();
    let missing = prepare_unselected(&compiled, selected).await;
    let (checked_after, checked_sources) = match &auditor {
        Some(_) => (check_order(&compiled, selected), checked_sources(&compiled, selected)),
        None => (BTreeMap::new(), BTreeMap::new()),
    };
    let mut started: BTreeMap<String, f64> = BTreeMap::new();
    let duplicates = Arc::new(match &auditor {
        Some(a) if !a.warn_error => WarnedDuplicates::new(&compiled, &checked_sources),
        _ => WarnedDuplicates::default(),
    });
    let verdicts = Arc::new(SourceVerdicts::new(checked_sources.keys()));
    let staged = match &auditor {
        Some(_) => staged_readers(&compiled, selected, &checked_after),
        None => BTreeMap::new(),
    };
    let mut s = Schedule::new(&compiled, selected, checked_after, checked_sources, staged);
    for key in duplicates.queried() {
        s.push_ready(Task::Late(key));
    }
    let mut tasks = JoinSet::new();
    let threads = threads.max(1);

    loop {
        if let Some(a) = &auditor {
            for view in std::mem::take(&mut s.released) {
                tracing::debug!(view, "released");
                a.scratch.release(&compiled.engine, &view);
            }
        }
        // Readers waiting for a source's verdict do no work: they hold no thread.
        while tasks.len().saturating_sub(verdicts.waiting()) < threads {
            let Some(task) = s.pop_ready() else { break };
            let name = match (task, &auditor) {
                (Task::Source(key), Some(a)) => {
                    // The readers that compute rows start now, and wait for its verdict to publish.
                    for reader in s.source_started(&key, |r| computes_rows(&compiled, r)) {
                        s.count_down(&reader);
                    }
                    let (c, a, decls, verdicts) = (
                        compiled.clone(),
                        a.clone(),
                        duplicates.checked_ahead(&compiled, &key),
                        verdicts.clone(),
                    );
                    tasks.spawn(async move {
                        let _stopped = verdicts.guard(&key);
                        let proven = check_source(&c, &key, &decls, &a, &verdicts).await;
                        Done::Source(key, proven)
                    });
                    continue;
                }
                (Task::Scan(key), Some(a)) => {
                    let (c, a, decls, verdicts) = (
                        compiled.clone(),
                        a.clone(),
                        duplicates.checked_ahead(&compiled, &key),
                        verdicts.clone(),
                    );
                    tasks.spawn(async move {
                        scan_source(&c, &key, &decls, &a, &verdicts).await;
                        Done::Other
                    });
                    continue;
                }
                (Task::Late(key), Some(a)) => {
                    let (c, a, duplicates) = (compiled.clone(), a.clone(), duplicates.clone());
                    tasks.spawn(async move {
                        if let Some(decls) = duplicates.claim(&key) {
                            check_warned(&c, &key, &decls, &a).await;
                        }
                        Done::Other
                    });
                    continue;
                }
                (Task::Rows, Some(a)) => {
                    let (c, a) = (compiled.clone(), a.clone());
                    tasks.spawn(async move {
                        a.collect_deferred(&c.engine).await;
                        Done::Other
                    });
                    continue;
                }
                (Task::Source(_) | Task::Late(_) | Task::Scan(_) | Task::Rows, None) => continue,
                (Task::Node(name), _) => name,
            };
            let node = &compiled.nodes[&name];
            if let Some(m) = compiled.dag.ancestors(&name).iter().find(|a| missing.contains(*a)) {
                let r = result(
                    node,
                    Status::Error,
                    None,
                    0.0,
                    Some(format!(
                        "upstream `{m}` has never been built on this target; select it too, e.g. --select +{name}"
                    )),
                );
                progress.finished(&r);
                s.skip_descendants(
                    &compiled,
                    &name,
                    &format!("upstream `{name}` failed"),
                    selected,
                    progress.as_ref(),
                );
                s.finish(name, r);
                continue;
            }
            if let Some((source, why)) = verdicts.failed_now(&node.sources) {
                let r = skipped_for_source(node, source, &why, 0.0);
                progress.finished(&r);
                s.skip_descendants(
                    &compiled,
                    &name,
                    &format!("upstream source `{}.{}` failed its checks", source.0, source.1),
                    selected,
                    progress.as_ref(),
                );
                s.finish(name, r);
                continue;
            }
            progress.started(&name);
            started.insert(name.clone(), run_start.elapsed().as_secs_f64());
            let (c, duplicates, verdicts) = (compiled.clone(), duplicates.clone(), verdicts.clone());
            let auditor = auditor.clone();
            let span = info_span!("node", name = %name);
            tasks.spawn(
                async move {
                    let start = Instant::now();
                    let outcome = execute(&c, &name, auditor, &duplicates, &verdicts).await;
                    Done::Node(name, outcome, start.elapsed().as_secs_f64())
                }
                .instrument(span),
            );
        }
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            () = verdicts.a_reader_waits() => continue,
        };
        let Some(joined) = joined else { break };
        let (name, outcome, secs) = match joined {
            Ok(Done::Node(name, outcome, secs)) => (name, outcome, secs),
            Ok(Done::Source(key, proven)) => {
                for reader in s.source_done(&key) {
                    s.count_down(&reader);
                }
                if proven {
                    s.push_ready(Task::Scan(key));
                }
                continue;
            }
            Ok(Done::Other) => continue,
            Err(e) => {
                tracing::error!("a model task panicked: {e}");
                continue;
            }
        };
        let node = &compiled.nodes[&name];
        let mut r = match (outcome, verdicts.failed_now(&node.sources)) {
            (Ok((w, note)), _) => result(node, Status::Success, w, secs, note),
            (Err(_), Some((source, why))) => skipped_for_source(node, source, &why, secs),
            (Err(msg), None) => {
                let msg = match failing_source_file(&compiled, node, &msg).await {
                    Some(file) => format!("{msg}\n{file}"),
                    None => msg,
                };
                result(node, Status::Error, None, secs, Some(msg))
            }
        };
        r.started_at = started.get(&name).copied().unwrap_or_default();
        r.completed_at = run_start.elapsed().as_secs_f64();
        tracing::info!(node = %name, status = ?r.status, rows = ?r.rows, seconds = secs, "node finished");
        progress.finished(&r);
        if auditor.as_ref().is_some_and(|a| a.has_deferred()) {
            s.push_ready(Task::Rows);
        }
        if r.status == Status::Success {
            for child in compiled.dag.children(&name) {
                s.count_down(child);
            }
        } else {
            s.skip_descendants(
                &compiled,
                &name,
                &format!("upstream `{name}` failed"),
                selected,
                progress.as_ref(),
            );
        }
        s.finish(name, r);
    }
    // Warned duplicates whose view never ran them (it failed before its
    // checks, or was skipped) are queried now.
    if let Some(a) = &auditor {
        for (key, decls) in duplicates.left() {
            check_warned(&compiled, &key, &decls, a).await;
        }
        a.collect_deferred(&compiled.engine).await;
    }
    // Only a task that panicked leaves nodes waiting: say so, never drop them.
    for name in std::mem::take(&mut s.waiting).into_keys() {
        let r = result(
            &compiled.nodes[&name],
            Status::Error,
            None,
            0.0,
            Some("not run: an upstream task stopped on an internal error (see the log)".into()),
        );
        progress.finished(&r);
        s.results.insert(name, r);
    }
    // Report in DAG order.
    compiled.dag.topo_order().filter_map(|n| s.results.remove(n)).collect()
}

/// Something the scheduler starts: checking a source, running a node, or
/// work that nothing waits for: a source's warned duplicates (see
/// [`WarnedDuplicates`]), its scans once the footers proved its verdict, or
/// the failing rows of sources' warnings (see [`Auditor::collect_deferred`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Source(SourceKey),
    Node(String),
    Late(SourceKey),
    Scan(SourceKey),
    Rows,
}

/// What a finished task reports. A source's checks give their verdict to
/// [`SourceVerdicts`]; the scheduler learns only that they are done.
enum Done {
    Node(String, Result<Executed, String>, f64),
    /// A source's verdict is given; true when it came from the footers, and
    /// the scans are still to run.
    Source(SourceKey, bool),
    Other,
}

/// What the scheduler knows between task completions.
struct Schedule {
    /// Selected nodes not started yet -> how many of their inputs are not done.
    waiting: BTreeMap<String, usize>,
    /// Tasks whose inputs are all done, the one heading the longest chain of
    /// tasks first: a task on the critical path started late delays the run.
    ready: BTreeSet<(Reverse<usize>, Task)>,
    /// Each task's longest chain: itself and the selected nodes after it.
    chain: BTreeMap<Task, usize>,
    results: BTreeMap<String, NodeResult>,
    /// node -> the nodes whose checks read it (see [`check_order`]).
    checked_after: BTreeMap<String, BTreeSet<String>>,
    /// Checked source -> the selected nodes that wait for its checks.
    checked_sources: BTreeMap<SourceKey, BTreeSet<String>>,
    /// Staged view -> the selected nodes that read it and have not finished
    /// (see [`staged_readers`]).
    staged: BTreeMap<String, BTreeSet<String>>,
    /// Staged views that no node left to finish reads: their rows can go.
    released: Vec<String>,
}

impl Schedule {
    fn new(
        compiled: &Compiled,
        selected: &BTreeSet<String>,
        checked_after: BTreeMap<String, BTreeSet<String>>,
        checked_sources: BTreeMap<SourceKey, BTreeSet<String>>,
        staged: BTreeMap<String, BTreeSet<String>>,
    ) -> Self {
        let waiting: BTreeMap<String, usize> = selected
            .iter()
            .map(|n| {
                let parents = compiled.dag.parents(n).iter().filter(|p| selected.contains(**p)).count();
                let sources = checked_sources.values().filter(|readers| readers.contains(n)).count();
                (
                    n.clone(),
                    parents + sources + checked_after.values().filter(|waiters| waiters.contains(n)).count(),
                )
            })
            .collect();
        // Longest chains over the DAG and the check order (a node whose
        // rows another node's checks read heads that node's chain too),
        // relaxed until stable: the check order can point against the DAG's.
        let mut longest: BTreeMap<&str, usize> = BTreeMap::new();
        let order: Vec<&str> = compiled.dag.topo_order().filter(|n| selected.contains(*n)).collect();
        for _ in 0..=order.len() {
            let mut changed = false;
            for &n in order.iter().rev() {
                let next = compiled
                    .dag
                    .children(n)
                    .into_iter()
                    .chain(checked_after.get(n).into_iter().flatten().map(String::as_str));
                let l = 1 + next.filter_map(|c| longest.get(c).copied()).max().unwrap_or(0);
                changed |= longest.insert(n, l) != Some(l);
            }
            if !changed {
                break;
            }
        }
        let mut chain: BTreeMap<Task, usize> =
            longest.iter().map(|(n, l)| (Task::Node(n.to_string()), *l)).collect();
        for (k, readers) in &checked_sources {
            let after = readers.iter().filter_map(|r| longest.get(r.as_str()).copied()).max().unwrap_or(0);
            chain.insert(Task::Source(k.clone()), 1 + after);
        }
        let mut s = Schedule {
            waiting,
            ready: BTreeSet::new(),
            chain,
            results: BTreeMap::new(),
            checked_after,
            checked_sources,
            staged,
            released: Vec::new(),
        };
        let ready: Vec<Task> = s
            .checked_sources
            .keys()
            .map(|k| Task::Source(k.clone()))
            .chain(s.waiting.iter().filter(|(_, c)| **c == 0).map(|(n, _)| Task::Node(n.clone())))
            .collect();
        for t in ready {
            s.push_ready(t);
        }
        s
    }

    /// Queue `task` once its inputs are done (once: the queue is a set);
    /// tasks with no chain (see [`Task::Late`], [`Task::Scan`],
    /// [`Task::Rows`]) come after every other.
    fn push_ready(&mut self, task: Task) {
        let w = self.chain.get(&task).copied().unwrap_or(0);
        self.ready.insert((Reverse(w), task));
    }

    fn pop_ready(&mut self) -> Option<Task> {
        let (_, task) = self.ready.pop_first()?;
        if let Task::Node(name) = &task {
            self.waiting.remove(name);
        }
        Some(task)
    }

    /// A source's checks started: those of its readers that `start_early`,
    /// which no longer wait for them.
    fn source_started(&mut self, key: &SourceKey, start_early: impl Fn(&str) -> bool) -> BTreeSet<String> {
        let Some(readers) = self.checked_sources.get_mut(key) else { return BTreeSet::new() };
        let (early, rest) = std::mem::take(readers).into_iter().partition(|r| start_early(r));
        *readers = rest;
        early
    }

    /// A source's checks are done: the nodes still waiting for them.
    fn source_done(&mut self, key: &SourceKey) -> BTreeSet<String> {
        self.checked_sources.remove(key).unwrap_or_default()
    }

    /// One input of `name` is done.
    fn count_down(&mut self, name: &str) {
        if let Some(c) = self.waiting.get_mut(name) {
            *c -= 1;
            if *c == 0 {
                self.push_ready(Task::Node(name.to_string()));
            }
        }
    }

    /// Record `name`'s result; checks that read it may run now, whatever
    /// became of it, and views that only it still read can be released.
    fn finish(&mut self, name: String, r: NodeResult) {
        let waiters: Vec<String> = self.checked_after.get(&name).into_iter().flatten().cloned().collect();
        for w in waiters {
            self.count_down(&w);
        }
        for (view, readers) in &mut self.staged {
            if readers.remove(&name) && readers.is_empty() {
                self.released.push(view.clone());
            }
        }
        self.staged.retain(|_, readers| !readers.is_empty());
        self.results.insert(name, r);
    }

    fn skip_descendants(
        &mut self,
        compiled: &Compiled,
        failed: &str,
        why: &str,
        selected: &BTreeSet<String>,
        progress: &dyn Progress,
    ) {
        for d in compiled.dag.descendants(failed) {
            if selected.contains(&d) && !self.results.contains_key(&d) {
                self.waiting.remove(&d);
                self.ready.retain(|(_, t)| *t != Task::Node(d.clone()));
                let r =
                    result(&compiled.nodes[&d], Status::Skipped, None, 0.0, Some(format!("skipped: {why}")));
                progress.finished(&r);
                self.finish(d, r);
            }
        }
    }
}

/// Whether `name`, run by a build, computes rows (a stored model, or a
/// checked view, which is staged): such a reader of a checked source starts
/// with the source's checks and waits for their verdict only to publish.
/// Other views only name their plan: they start after the verdict, so their
/// readers never see a failed source's rows.
fn computes_rows(compiled: &Compiled, name: &str) -> bool {
    compiled.nodes[name].materialized.is_stored() || !compiled.project.tests_of(name).is_empty()
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

/// Checks that read another selected node (relationships, reconciliation) run
/// after it: node -> the nodes whose checks wait for it. Where waiting would
/// close a cycle (the other node depends on this one), the check reads the
/// other's published version instead.
fn check_order(compiled: &Compiled, selected: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in selected {
        let ancestors = compiled.dag.ancestors(name);
        for d in compiled.project.tests_of(name) {
            let Ok(a) = crate::assertions::parse(name, "", d) else { continue };
            let Some(other) = a.kind.other_relation() else { continue };
            if other == name
                || !selected.contains(other)
                || ancestors.contains(other)
                || reaches(compiled, &order, name, other)
            {
                continue;
            }
            order.entry(other.to_string()).or_default().insert(name.clone());
        }
    }
    order
}

/// Whether `to` runs after `from`, through the DAG or the check order.
fn reaches(compiled: &Compiled, order: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut stack = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n.clone()) {
            stack.extend(compiled.dag.children(&n).iter().map(|c| c.to_string()));
            stack.extend(order.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

/// Each checked view a build stages (see [`stage_view`]) -> the selected
/// nodes that read its rows: itself (its checks), its descendants (the views
/// between are only plans over it) and the nodes whose checks read it. Once
/// they have all finished its rows are released. A view that a singular test
/// reads is left out: those tests run after every node.
fn staged_readers(
    compiled: &Compiled,
    selected: &BTreeSet<String>,
    checked_after: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    selected
        .iter()
        .filter(|v| !compiled.nodes[*v].materialized.is_stored() && computes_rows(compiled, v))
        .filter(|v| !compiled.singular_tests.iter().any(|t| t.refs.contains(*v)))
        .map(|v| {
            let mut readers: BTreeSet<String> =
                compiled.dag.descendants(v).into_iter().filter(|d| selected.contains(d)).collect();
            readers.extend(checked_after.get(v).into_iter().flatten().cloned());
            readers.insert(v.clone());
            (v.clone(), readers)
        })
        .collect()
}

/// Every source the selection reads that declares checks -> the selected
/// nodes reading it, which wait for its checks.
fn checked_sources(
    compiled: &Compiled,
    selected: &BTreeSet<String>,
) -> BTreeMap<SourceKey, BTreeSet<String>> {
    let mut readers: BTreeMap<SourceKey, BTreeSet<String>> = BTreeMap::new();
    for name in selected {
        for key in &compiled.nodes[name].sources {
            if compiled.project.sources.get(key).is_some_and(|d| !d.tests.is_empty()) {
                readers.entry(key.clone()).or_default().insert(name.clone());
            }
        }
    }
    readers
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
    let upstream = |named: &[String]| crate::audit::upstream_loads(compiled, view, named);
    let (own, _) =
        crate::audit::prepare(view, &quote_ident(view), compiled.project.tests_of(view), Some(&upstream));
    sql.extend(own.iter().map(crate::assertions::failing::one_query_sql));
    sql.extend(auditor.checks_naming(compiled, view).iter().cloned());
    sql
}

/// Check one source against `decls` and give its verdict, as soon as it is
/// known. When the Parquet footers prove it, before any scan, this returns
/// true: the scans, which only count what is reported, are left to
/// [`scan_source`], which no reader waits for. Else the scans give it.
async fn check_source(
    compiled: &Compiled,
    key: &SourceKey,
    decls: &[TestDecl],
    auditor: &Auditor,
    verdicts: &SourceVerdicts,
) -> bool {
    let name = format!("{}.{}", key.0, key.1);
    if auditor.proven_unblocked(&compiled.engine, &name, &relation_sql(&name), decls).await {
        verdicts.give(key, None);
        return true;
    }
    scan_source(compiled, key, decls, auditor, verdicts).await;
    false
}

/// Run one source's checks and give the verdict (unless one was given),
/// before the failing rows are stored, which no reader needs.
async fn scan_source(
    compiled: &Compiled,
    key: &SourceKey,
    decls: &[TestDecl],
    auditor: &Auditor,
    verdicts: &SourceVerdicts,
) {
    let name = format!("{}.{}", key.0, key.1);
    let give = |outcomes: &[Outcome]| verdicts.give(key, blocking_summary(outcomes));
    auditor
        .check_judged(&compiled.engine, &name, &relation_sql(&name), decls, None, &Counted::new(), give)
        .await;
}

/// Check one source against warn-level `decls`, which give no verdict.
async fn check_warned(compiled: &Compiled, key: &SourceKey, decls: &[TestDecl], auditor: &Auditor) {
    let name = format!("{}.{}", key.0, key.1);
    auditor.check(&compiled.engine, &name, &relation_sql(&name), decls, None).await;
}

/// Sources' warn-level duplicates checks, which hold back none of the
/// source's readers (a warning never blocks). A checked view reading the
/// source counts them as its plan sorts the source (a dedupe window: see
/// [`TableKeys`]); for a source no checked view reads, they are queried in a
/// slot nothing else needs, unless that query also answers a completeness
/// check of the source (of the same key), which the readers wait for: then
/// they run with it, ahead. Not with `--warn-error`, where a warning blocks
/// readers: there they are checked ahead, as the source's other checks are.
#[derive(Default)]
struct WarnedDuplicates {
    /// Source -> the view that counts it (None: queried), and those checks.
    by_source: BTreeMap<SourceKey, (Option<String>, Vec<TestDecl>)>,
    /// Source -> its other checks, which its readers wait for.
    ahead: BTreeMap<SourceKey, Vec<TestDecl>>,
    /// Sources whose checks here have not run yet.
    pending: Mutex<BTreeSet<SourceKey>>,
}

impl WarnedDuplicates {
    /// For each checked source (-> its selected readers), the first reader that
    /// is a checked view, staged by the build, if there is one.
    fn new(compiled: &Compiled, checked_sources: &BTreeMap<SourceKey, BTreeSet<String>>) -> Self {
        let (mut by_source, mut ahead) = (BTreeMap::new(), BTreeMap::new());
        for (key, readers) in checked_sources {
            let Some(decl) = compiled.project.sources.get(key) else { continue };
            let name = format!("{}.{}", key.0, key.1);
            let (others, duplicates) = split_warned_duplicates(&name, &decl.tests);
            if !duplicates.is_empty() {
                let staged = |r: &&String| {
                    !compiled.nodes[r.as_str()].materialized.is_stored()
                        && !compiled.project.tests_of(r).is_empty()
                };
                let view = readers.iter().find(staged).cloned();
                if view.is_none() && duplicates_answer_completeness(&name, &decl.tests) {
                    // Queried with the checks ahead, they cost one scan, not two.
                    continue;
                }
                by_source.insert(key.clone(), (view, duplicates));
                ahead.insert(key.clone(), others);
            }
        }
        let pending = Mutex::new(by_source.keys().cloned().collect());
        WarnedDuplicates { by_source, ahead, pending }
    }

    /// The sources whose checks here no view counts.
    fn queried(&self) -> Vec<SourceKey> {
        self.by_source.iter().filter(|(_, (view, _))| view.is_none()).map(|(k, _)| k.clone()).collect()
    }

    /// The checks of source `key` that its readers wait for.
    fn checked_ahead(&self, compiled: &Compiled, key: &SourceKey) -> Vec<TestDecl> {
        match self.ahead.get(key) {
            Some(others) => others.clone(),
            None => compiled.project.sources.get(key).map(|d| d.tests.clone()).unwrap_or_default(),
        }
    }

    /// The sources `view` counts, with their checks here.
    fn of_view(&self, view: &str) -> Vec<(&SourceKey, &[TestDecl])> {
        self.by_source
            .iter()
            .filter(|(_, (v, _))| v.as_deref() == Some(view))
            .map(|(k, (_, d))| (k, d.as_slice()))
            .collect()
    }

    /// Claim the checks here of `key` to run them: None once claimed.
    fn claim(&self, key: &SourceKey) -> Option<Vec<TestDecl>> {
        let claimed = self.pending.lock().is_ok_and(|mut p| p.remove(key));
        claimed.then(|| self.by_source.get(key).map(|(_, d)| d.clone())).flatten()
    }

    /// The checks here not claimed yet, claimed now.
    fn left(&self) -> Vec<(SourceKey, Vec<TestDecl>)> {
        let left = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        left.into_iter().filter_map(|k| self.by_source.get(&k).map(|(_, d)| (k, d.clone()))).collect()
    }
}

/// What a node's run leaves to report: what it wrote, and a note (warnings).
type Executed = (Option<Written>, Option<String>);

/// Run one node; on success the node resolves to its new data for dependents.
async fn execute(
    compiled: &Arc<Compiled>,
    name: &str,
    auditor: Option<Arc<Auditor>>,
    duplicates: &WarnedDuplicates,
    verdicts: &Arc<SourceVerdicts>,
) -> Result<Executed, String> {
    let node = &compiled.nodes[name];
    let engine = &compiled.engine;
    let compiled_path = compiled.compiled_path(node).display().to_string();
    let plan = match node.materialized {
        Materialization::Seed => {
            seed_plan(&compiled.project, engine, node).await.map_err(|d| d.headline())?
        }
        _ => engine.plan_sql(&node.sql).await.map_err(|e| {
            sql_diagnostic(&node.path, &node.source_text, &node.sql, &e, &compiled_path).headline()
        })?,
    };
    if !node.materialized.is_stored() {
        let decls = compiled.project.tests_of(name);
        let Some(auditor) = auditor.filter(|_| !decls.is_empty()) else {
            engine.register_view(&node.name, plan, &node.sql).map_err(|e| e.to_string())?;
            return Ok((None, None));
        };
        // Checked once, read by the rest of the run: see `stage_view`.
        let start = std::time::Instant::now();
        let sources = duplicates.of_view(name);
        let mut tables: Vec<(&SourceKey, TableKeys)> = Vec::new();
        for (key, checks) in &sources {
            let source = format!("{}.{}", key.0, key.1);
            for (columns, keep) in crate::audit::keys_to_count(&source, checks) {
                tables.push((key, TableKeys { table: relation_sql(&source), key: columns, keep }));
            }
        }
        let count = ToCount {
            own: crate::audit::keys_to_count(name, decls),
            tables: tables.iter().map(|(_, t)| t.clone()).collect(),
        };
        let staged = stage_view(
            engine,
            &node.name,
            plan,
            &readers_of(compiled, name, &auditor),
            &auditor.scratch,
            &count,
        )
        .await
        .map_err(|e| format!("{}: {}", node.path.display(), crate::plan::clean_message(&e)))?;
        tracing::debug!(
            view = name,
            seconds = start.elapsed().as_secs_f64(),
            held_bytes = auditor.scratch.held(),
            "staged"
        );
        let upstream = |named: &[String]| crate::audit::upstream_loads(compiled, name, named);
        let mut outcomes = auditor
            .check_counted(engine, name, &quote_ident(name), decls, Some(&upstream), &staged.own)
            .await;
        // The sources' checks counted here (queried where the plan did not
        // sort the source): one that cannot run blocks this reader.
        for (key, checks) in sources.into_iter().filter(|(key, _)| duplicates.claim(key).is_some()) {
            let counted = tables
                .iter()
                .zip(&staged.tables)
                .filter(|((k, _), _)| *k == key)
                .filter_map(|((_, t), c)| Some((t.key.clone(), c.clone()?)))
                .collect();
            let source = format!("{}.{}", key.0, key.1);
            let checked = auditor.check_source_counted(engine, &source, checks, &counted).await;
            outcomes.extend(checked.into_iter().filter(|o| o.blocks()));
        }
        if let Some(why) = blocking_summary(&outcomes) {
            return Err(why);
        }
        // Its readers start once it succeeds: only after its sources passed.
        if let Some((source, why)) = verdicts.failed(&node.sources).await {
            return Err(failed_source_message(source, &why));
        }
        return Ok((None, warning_summary(&outcomes)));
    }
    let schema = Arc::new(plan.schema().as_arrow().clone());
    // Written in the model's order; the gate's duplicates counted as the rows pass, where they come in key order.
    let keys = match &auditor {
        Some(_) => crate::audit::keys_to_count(name, compiled.project.tests_of(name)),
        None => Vec::new(),
    };
    let mut plan = plan_write(engine, plan, &keys)
        .await
        .map_err(|e| format!("{}: {}", node.path.display(), crate::plan::clean_message(&e)))?;
    let written_keys = std::mem::take(&mut plan.counted);
    let gate = auditor.map(|auditor| {
        Arc::new(ModelAudit {
            compiled: compiled.clone(),
            auditor,
            model: name.to_string(),
            schema,
            written_keys,
            outcomes: Default::default(),
            sources: node.sources.clone(),
            verdicts: verdicts.clone(),
        })
    });
    let url = compiled.target.table_url(&node.name);
    let written = write_table(
        engine,
        &url,
        &node.name,
        plan,
        SaveMode::Overwrite,
        gate.clone().map(|g| g as Arc<dyn Audit>),
    )
    .await;
    let outcomes = gate.map(|g| g.outcomes()).unwrap_or_default();
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            return Err(match blocking_summary(&outcomes) {
                Some(why) => format!("not published, the previous version stays: {why}"),
                None => failure_text(node, &url, &crate::materialize::error_text(&e)),
            });
        }
    };
    let provider = open_table(engine, &url, At::Latest)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: table vanished after writing", url))?;
    engine.register(&node.name, provider).map_err(|e| e.to_string())?;
    Ok((Some(written), warning_summary(&outcomes)))
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
