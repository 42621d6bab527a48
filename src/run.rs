//! Execute the selected part of the DAG: independent nodes in parallel (up to
//! `threads` at once), each node only after its selected parents succeeded.
//! A failed node's descendants are skipped, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;
use tracing::{info_span, Instrument};

use crate::compile::{seed_plan, Compiled, Node};
use crate::materialize::{open_table, write_table, Written};
use crate::plan::sql_diagnostic;
use crate::project::Materialization;

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

/// Run `selected` nodes of `compiled`.
pub async fn run(compiled: Arc<Compiled>, selected: &BTreeSet<String>, threads: usize, progress: Arc<dyn Progress>) -> Vec<NodeResult> {
    let run_start = Instant::now();
    let missing = prepare_unselected(&compiled, selected).await;
    let mut started: BTreeMap<String, f64> = BTreeMap::new();
    let mut results: BTreeMap<String, NodeResult> = BTreeMap::new();
    let mut waiting: BTreeMap<String, usize> = selected
        .iter()
        .map(|n| (n.clone(), compiled.dag.parents(n).iter().filter(|p| selected.contains(**p)).count()))
        .collect();
    let mut ready: BTreeSet<String> = waiting.iter().filter(|(_, c)| **c == 0).map(|(n, _)| n.clone()).collect();
    let mut tasks = JoinSet::new();
    let threads = threads.max(1);

    loop {
        while tasks.len() < threads {
            let Some(name) = ready.pop_first() else { break };
            waiting.remove(&name);
            let node = &compiled.nodes[&name];
            if let Some(m) = compiled.dag.ancestors(&name).iter().find(|a| missing.contains(*a)) {
                let r = result(node, Status::Error, None, 0.0, Some(format!("upstream `{m}` has never been built on this target; select it too, e.g. --select +{name}")));
                progress.finished(&r);
                skip_descendants(&compiled, &name, selected, &mut results, &mut waiting, &mut ready, progress.as_ref());
                results.insert(name, r);
                continue;
            }
            progress.started(&name);
            started.insert(name.clone(), run_start.elapsed().as_secs_f64());
            let c = compiled.clone();
            let span = info_span!("node", name = %name);
            tasks.spawn(
                async move {
                    let start = Instant::now();
                    let outcome = execute(&c, &c.nodes[&name]).await;
                    (name, outcome, start.elapsed().as_secs_f64())
                }
                .instrument(span),
            );
        }
        let Some(joined) = tasks.join_next().await else { break };
        let (name, outcome, secs) = match joined {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("a model task panicked: {e}");
                continue;
            }
        };
        let node = &compiled.nodes[&name];
        let mut r = match outcome {
            Ok(w) => result(node, Status::Success, w, secs, None),
            Err(msg) => result(node, Status::Error, None, secs, Some(msg)),
        };
        r.started_at = started.get(&name).copied().unwrap_or_default();
        r.completed_at = run_start.elapsed().as_secs_f64();
        tracing::info!(node = %name, status = ?r.status, rows = ?r.rows, seconds = secs, "node finished");
        progress.finished(&r);
        if r.status == Status::Success {
            for child in compiled.dag.children(&name) {
                if let Some(c) = waiting.get_mut(child) {
                    *c -= 1;
                    if *c == 0 {
                        ready.insert(child.to_string());
                    }
                }
            }
        } else {
            skip_descendants(&compiled, &name, selected, &mut results, &mut waiting, &mut ready, progress.as_ref());
        }
        results.insert(name, r);
    }
    // Report in DAG order.
    compiled.dag.topo_order().filter_map(|n| results.remove(n)).collect()
}

fn skip_descendants(
    compiled: &Compiled,
    failed: &str,
    selected: &BTreeSet<String>,
    results: &mut BTreeMap<String, NodeResult>,
    waiting: &mut BTreeMap<String, usize>,
    ready: &mut BTreeSet<String>,
    progress: &dyn Progress,
) {
    for d in compiled.dag.descendants(failed) {
        if selected.contains(&d) && !results.contains_key(&d) {
            waiting.remove(&d);
            ready.remove(&d);
            let r = result(&compiled.nodes[&d], Status::Skipped, None, 0.0, Some(format!("skipped: upstream `{failed}` failed")));
            progress.finished(&r);
            results.insert(d, r);
        }
    }
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
            match open_table(&compiled.engine, &url, None).await {
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

/// Run one node; on success the node resolves to its new data for dependents.
async fn execute(compiled: &Compiled, node: &Node) -> Result<Option<Written>, String> {
    let engine = &compiled.engine;
    let compiled_path = compiled.compiled_path(node).display().to_string();
    let plan = match node.materialized {
        Materialization::Seed => seed_plan(&compiled.project, engine, node).await.map_err(|d| d.headline())?,
        _ => engine
            .plan_sql(&node.sql)
            .await
            .map_err(|e| sql_diagnostic(&node.path, &node.source_text, &node.sql, &e, &compiled_path).headline())?,
    };
    if !node.materialized.is_stored() {
        engine.register_view(&node.name, plan, &node.sql).map_err(|e| e.to_string())?;
        return Ok(None);
    }
    let url = compiled.target.table_url(&node.name);
    let written = write_table(engine, &url, &node.name, plan)
        .await
        .map_err(|e| format!("{}: {}", node.path.display(), crate::materialize::error_text(&e)))?;
    let provider = open_table(engine, &url, None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: table vanished after writing", url))?;
    engine.register(&node.name, provider).map_err(|e| e.to_string())?;
    Ok(Some(written))
}
