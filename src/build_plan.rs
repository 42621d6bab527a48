//! The build planner: the compiled project, a selection and the run's
//! options in, an explicit plan of steps out, with the edges that order them
//! and their priorities. [`crate::executor`] runs it; [`crate::run`] says what
//! each step does. `tally build --plan` prints it.
//!
//! With the gate (`tally build`), each checked source is a step of its own
//! ([`Step::CheckSource`]); the nodes reading it that compute rows start with
//! it and wait for its verdict only to publish, the others start after it
//! passed. A checked view is staged (computed once, checked, read by the rest
//! of the run) and its rows are released once no step left reads them
//! ([`Step::Release`]). A source's warn-level duplicates, which hold back no
//! reader, are counted by a checked view that sorts the source, or queried
//! when a slot is free ([`WarnedDuplicates`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::assertions::CheckSet;
use crate::compile::Compiled;
use crate::executor::{Planned, StepId};
use crate::plan::Capabilities;
use crate::verdicts::SourceKey;

/// One unit of a build's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A source's checks that its readers wait for: its verdict.
    CheckSource(SourceKey),
    /// A source's scans, when its Parquet footers proved the verdict before
    /// any scan: only the counts reported are left, which no reader needs.
    ScanSource(SourceKey),
    /// A source's warned duplicates no checked view counts: queried in a slot
    /// nothing else needs.
    WarnedDuplicates(SourceKey),
    /// A node: a view planned, a checked view staged and checked, a table
    /// written (with the gate: audited, then published or rejected).
    Node(String),
    /// A staged view's rows dropped: no step left reads them.
    Release(String),
    /// The end of the run: the warned duplicates no step checked (their view
    /// failed or was skipped), and the failing rows left for later.
    Finish,
    /// Failing rows of warnings, read in a slot no step needs (see
    /// [`Runner::background`](crate::executor::Runner::background)).
    CollectRows,
}

/// Options that shape a plan.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `tally build`: checks gate every node and source.
    pub gate: bool,
    /// `--warn-error`: a warning blocks like an error.
    pub warn_error: bool,
}

/// A build plan: the steps, and the planning decisions the steps read.
pub struct BuildPlan {
    pub steps: Vec<Planned<Step>>,
    /// The selected nodes.
    pub selected: BTreeSet<String>,
    pub options: Options,
    /// The checks of each checked source that its readers wait for.
    pub source_checks: BTreeMap<SourceKey, CheckSet>,
    pub warned: WarnedDuplicates,
    /// Checked views that are staged.
    pub staged: BTreeSet<String>,
    /// What the engine can do, as the plan was made for it.
    pub capabilities: Capabilities,
}

/// Sources' warn-level duplicates checks, which hold back none of the
/// source's readers (a warning never blocks). A checked view reading the
/// source counts them as its plan sorts the source (a dedupe window: see
/// [`TableKeys`](crate::materialize::TableKeys)); for a source no checked view
/// reads, they are queried in a slot nothing else needs, unless that query
/// also answers a completeness check of the source (of the same key), which
/// the readers wait for: then they run with it, ahead. Not with
/// `--warn-error`, where a warning blocks readers: there they are checked
/// ahead, as the source's other checks are.
#[derive(Debug, Default)]
pub struct WarnedDuplicates {
    /// Source -> the view that counts it (None: queried), and those checks.
    pub by_source: BTreeMap<SourceKey, (Option<String>, CheckSet)>,
}

impl WarnedDuplicates {
    /// The sources `view` counts, with their checks here.
    pub fn of_view(&self, view: &str) -> Vec<(&SourceKey, &CheckSet)> {
        self.by_source
            .iter()
            .filter(|(_, (v, _))| v.as_deref() == Some(view))
            .map(|(k, (_, d))| (k, d))
            .collect()
    }
}

/// Plan the build of `selected` (every node must be in `compiled`).
pub fn plan(
    compiled: &Compiled,
    selected: &BTreeSet<String>,
    options: Options,
    capabilities: Capabilities,
) -> BuildPlan {
    let gate = options.gate;
    let checked_sources = if gate { checked_sources(compiled, selected) } else { BTreeMap::new() };
    let checked_after = if gate { check_order(compiled, selected) } else { BTreeMap::new() };
    let warned = if gate && !options.warn_error {
        warned_duplicates(compiled, &checked_sources, capabilities)
    } else {
        WarnedDuplicates::default()
    };
    let mut source_checks = BTreeMap::new();
    for key in checked_sources.keys() {
        let all = compiled.checks_of(&format!("{}.{}", key.0, key.1));
        let ahead = match (warned.by_source.contains_key(key), all.warned_duplicates()) {
            (true, Some((others, _))) => others,
            _ => all.clone(),
        };
        source_checks.insert(key.clone(), ahead);
    }
    let staged: BTreeSet<String> = if gate && capabilities.stage_views {
        selected.iter().filter(|v| is_checked_view(compiled, v)).cloned().collect()
    } else {
        BTreeSet::new()
    };

    let mut steps: Vec<Planned<Step>> = Vec::new();
    let mut add = |step: Step| {
        steps.push(Planned { step, needs: vec![], after: vec![], starts_with: vec![], priority: 0 });
        steps.len() - 1
    };
    let source_id: BTreeMap<&SourceKey, StepId> =
        checked_sources.keys().map(|k| (k, add(Step::CheckSource(k.clone())))).collect();
    let node_id: BTreeMap<&str, StepId> =
        selected.iter().map(|n| (n.as_str(), add(Step::Node(n.clone())))).collect();
    for (key, _) in warned.by_source.iter().filter(|(_, (view, _))| view.is_none()) {
        add(Step::WarnedDuplicates(key.clone()));
    }
    let scans: Vec<(StepId, StepId)> = if capabilities.footers {
        source_id.iter().map(|(k, &check)| (add(Step::ScanSource((*k).clone())), check)).collect()
    } else {
        Vec::new()
    };
    let releases: Vec<(StepId, &String)> = staged
        .iter()
        .filter(|v| !compiled.singular_tests.iter().any(|t| t.refs.contains(*v)))
        .map(|v| (add(Step::Release(v.clone())), v))
        .collect();
    let finish = gate.then(|| add(Step::Finish));

    for (name, &id) in &node_id {
        let node = &compiled.nodes[*name];
        steps[id].needs.extend(compiled.dag.parents(name).iter().filter_map(|p| node_id.get(p)));
        for key in node.sources.iter().filter(|k| source_id.contains_key(k)) {
            let check = source_id[key];
            if computes_rows(compiled, name) {
                steps[id].starts_with.push(check);
            } else {
                steps[id].needs.push(check);
            }
        }
    }
    for (other, waiters) in &checked_after {
        for w in waiters {
            steps[node_id[w.as_str()]].after.push(node_id[other.as_str()]);
        }
    }
    for (scan, check) in scans {
        steps[scan].after.push(check);
    }
    for (release, view) in releases {
        // Its readers: itself (its checks), its descendants (the views between
        // are only plans over it) and the nodes whose checks read it.
        let mut readers: BTreeSet<&str> = compiled
            .dag
            .descendants(view)
            .iter()
            .filter_map(|d| node_id.get_key_value(d.as_str()).map(|(k, _)| *k))
            .collect();
        readers.extend(checked_after.get(view).into_iter().flatten().map(String::as_str));
        readers.insert(view.as_str());
        steps[release].after = readers.iter().map(|r| node_id[r]).collect();
    }
    if let Some(finish) = finish {
        steps[finish].after = (0..finish).filter(|&i| !matches!(steps[i].step, Step::Release(_))).collect();
    }
    prioritize(&mut steps);
    BuildPlan { steps, selected: selected.clone(), options, source_checks, warned, staged, capabilities }
}

/// Each step's priority: the length of the longest chain of nodes and source
/// checks from it to the end (a step on the critical path started late
/// delays the run). A release comes first of all: it frees memory at once.
fn prioritize(steps: &mut [Planned<Step>]) {
    let n = steps.len();
    let mut dependents: Vec<Vec<StepId>> = vec![vec![]; n];
    let mut open: Vec<usize> = vec![0; n];
    for (id, s) in steps.iter().enumerate() {
        for &d in s.needs.iter().chain(&s.after).chain(&s.starts_with) {
            dependents[d].push(id);
            open[id] += 1;
        }
    }
    // Topological order (Kahn), then the chains from the end.
    let mut order: Vec<StepId> = (0..n).filter(|&i| open[i] == 0).collect();
    let mut i = 0;
    while i < order.len() {
        for &d in &dependents[order[i]] {
            open[d] -= 1;
            if open[d] == 0 {
                order.push(d);
            }
        }
        i += 1;
    }
    let mut chain = vec![0usize; n];
    for &id in order.iter().rev() {
        let weight = usize::from(matches!(steps[id].step, Step::Node(_) | Step::CheckSource(_)));
        chain[id] = weight + dependents[id].iter().map(|&d| chain[d]).max().unwrap_or(0);
    }
    for (id, s) in steps.iter_mut().enumerate() {
        s.priority = if matches!(s.step, Step::Release(_)) { usize::MAX } else { chain[id] };
    }
}

/// A checked view: a view with checks of its own, which a build computes once.
fn is_checked_view(compiled: &Compiled, name: &str) -> bool {
    !compiled.nodes[name].materialized.is_stored() && !compiled.checks_of(name).is_empty()
}

/// Whether `name`, run by a build, computes rows (a stored model, or a
/// checked view): such a reader of a checked source starts with the source's
/// checks and waits for their verdict only to publish. Other views only name
/// their plan: they start after the verdict, so their readers never see a
/// failed source's rows.
fn computes_rows(compiled: &Compiled, name: &str) -> bool {
    compiled.nodes[name].materialized.is_stored() || !compiled.checks_of(name).is_empty()
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
            if !compiled.checks_of(&format!("{}.{}", key.0, key.1)).is_empty() {
                readers.entry(key.clone()).or_default().insert(name.clone());
            }
        }
    }
    readers
}

/// Checks that read another selected node (relationships, reconciliation) run
/// after it: node -> the nodes whose checks wait for it. Where waiting would
/// close a cycle (the other node depends on this one), the check reads the
/// other's published version instead.
fn check_order(compiled: &Compiled, selected: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in selected {
        let ancestors = compiled.dag.ancestors(name);
        for other in compiled.checks_of(name).other_relations() {
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

/// For each checked source (-> its selected readers) with warned duplicates:
/// the first reader that is a staged checked view counts them, if there is
/// one (and the engine counts keys as rows pass).
fn warned_duplicates(
    compiled: &Compiled,
    checked_sources: &BTreeMap<SourceKey, BTreeSet<String>>,
    capabilities: Capabilities,
) -> WarnedDuplicates {
    let mut by_source = BTreeMap::new();
    for (key, readers) in checked_sources {
        let checks = compiled.checks_of(&format!("{}.{}", key.0, key.1));
        let Some((_, duplicates)) = checks.warned_duplicates() else { continue };
        let view = match capabilities.stage_views && capabilities.count_keys {
            true => readers.iter().find(|r| is_checked_view(compiled, r)).cloned(),
            false => None,
        };
        if view.is_none() && checks.duplicates_answer_completeness() {
            // Queried with the checks ahead, they cost one scan, not two.
            continue;
        }
        by_source.insert(key.clone(), (view, duplicates));
    }
    WarnedDuplicates { by_source }
}

impl BuildPlan {
    /// The plan as a table, for `--plan`: one line per step, with its edges.
    pub fn describe(&self, compiled: &Compiled, threads: usize) -> String {
        let mut out = String::new();
        let what = if self.options.gate { "build (write, audit, publish)" } else { "run (write, publish)" };
        let _ = writeln!(
            out,
            "Plan of a {what}: {} steps, {} nodes, up to {threads} at a time",
            self.steps.len(),
            self.selected.len()
        );
        let _ = writeln!(out, "engine: {}", self.capabilities.describe());
        let _ = writeln!(
            out,
            "step  prio.  what  [edges: needs = after it succeeded; after = after it ended; starts with = once it started]"
        );
        for (id, s) in self.steps.iter().enumerate() {
            let priority =
                if s.priority == usize::MAX { "first".to_string() } else { s.priority.to_string() };
            let mut line = format!("{:>4}  {priority:>5}  {}", id + 1, self.step_text(compiled, &s.step));
            let edges = [("needs", &s.needs), ("after", &s.after), ("starts with", &s.starts_with)];
            let mut parts = Vec::new();
            for (label, ids) in edges {
                if !ids.is_empty() {
                    let mut ids = ids.to_vec();
                    ids.sort_unstable();
                    let ids: Vec<String> = ids.iter().map(|i| format!("#{}", i + 1)).collect();
                    parts.push(format!("{label} {}", ids.join(" ")));
                }
            }
            if !parts.is_empty() {
                line.push_str(&format!("  [{}]", parts.join("; ")));
            }
            let _ = writeln!(out, "{line}");
        }
        out
    }

    fn step_text(&self, compiled: &Compiled, step: &Step) -> String {
        let checks = |relation: &str| compiled.checks_of(relation).checks().len();
        let count = |n: usize| if n == 1 { "1 check".to_string() } else { format!("{n} checks") };
        match step {
            Step::CheckSource(k) => format!(
                "check source {}.{} ({} ahead of its readers)",
                k.0,
                k.1,
                count(self.source_checks.get(k).map_or(0, |c| c.checks().len()))
            ),
            Step::ScanSource(k) => {
                format!("scan source {}.{} for its counts, if its footers proved the verdict", k.0, k.1)
            }
            Step::WarnedDuplicates(k) => format!("query the warned duplicates of source {}.{}", k.0, k.1),
            Step::Node(name) => {
                let node = &compiled.nodes[name];
                let m = node.materialized.as_str();
                let n = checks(name);
                let counted: Vec<String> =
                    self.warned.of_view(name).iter().map(|(k, _)| format!("{}.{}", k.0, k.1)).collect();
                let also = if counted.is_empty() {
                    String::new()
                } else {
                    format!("; counts the warned duplicates of {}", counted.join(", "))
                };
                match (node.materialized.is_stored(), self.options.gate) {
                    (true, true) => format!("write, audit ({}), publish {name} ({m})", count(n)),
                    (true, false) => format!("write, publish {name} ({m})"),
                    (false, true) if self.staged.contains(name) => {
                        format!("stage and check {name} ({m}, {}{also})", count(n))
                    }
                    (false, true) if n > 0 => format!("plan and check {name} ({m}, {})", count(n)),
                    (false, _) => format!("plan {name} ({m})"),
                }
            }
            Step::Release(v) => format!("release the staged rows of {v}"),
            Step::Finish => {
                "finish: warned duplicates left unchecked, failing rows left for later".to_string()
            }
            Step::CollectRows => "collect failing rows of warnings".to_string(),
        }
    }
}
