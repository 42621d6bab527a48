//! `tally test`: assertions on published tables (and views over them), and
//! what every command that evaluates assertions does with their outcomes.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{compile_project, resolve_selection};
use crate::assertions::{self, Assertion, CheckSet, Kind, Outcome};
use crate::audit::Auditor;
use crate::cli::{Gate, Global, Selection};
use crate::compile::{Compiled, SingularTest};
use crate::error::{Error, Result};
use crate::run::{NodeResult, prepare_unselected};

/// `only_freshness`: `tally freshness`, the sources' freshness checks alone.
pub async fn test(global: &Global, sel: &Selection, gate: &Gate, only_freshness: bool) -> Result<i32> {
    let start = Instant::now();
    let c = compile_project(global).await?;
    let chosen = resolve_selection(&c, sel)?;
    // Every node resolves to what the warehouse holds; `unbuilt` never published.
    let unbuilt = prepare_unselected(&c, &BTreeSet::new()).await;
    let run_id = super::run_id();
    let auditor = Auditor::new(&c, &run_id, gate.warn_error).await;
    auditor.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    let wanted = |relation: &str| -> CheckSet {
        let set = c.checks_of(relation);
        if only_freshness { set.filter(|a| matches!(a.kind, Kind::Freshness(_))) } else { set.clone() }
    };

    // (relation, its checks, never built)
    let mut relations: Vec<(String, CheckSet, bool)> = Vec::new();
    for name in c.dag.topo_order().filter(|n| chosen.contains(*n)) {
        let never_built = unbuilt.contains(name) || c.dag.ancestors(name).iter().any(|a| unbuilt.contains(a));
        relations.push((name.to_string(), wanted(name), never_built));
    }
    // The sources' own checks: all of them, or those `source:` selectors name.
    let sources = crate::select::sources(c.project.sources.keys(), &sel.select, &sel.exclude)?;
    for key in c.project.sources.keys().filter(|key| sources.contains(*key)) {
        let name = format!("{}.{}", key.0, key.1);
        let checks = wanted(&name);
        relations.push((name, checks, !c.sources.contains_key(key)));
    }
    for (relation, checks, never_built) in relations {
        if never_built {
            auditor.record(not_built(&relation, checks.checks()));
        } else {
            auditor.check(&c.engine, checks.checks()).await;
        }
    }
    if !only_freshness {
        let tests: Vec<&SingularTest> = c
            .singular_tests
            .iter()
            .filter(|t| sel.select.is_empty() || t.refs.iter().any(|r| chosen.contains(r)))
            .collect();
        let (runnable, unready): (Vec<&SingularTest>, Vec<&SingularTest>) =
            tests.into_iter().partition(|t| !t.refs.iter().any(|r| unbuilt.contains(r)));
        auditor.check_singular(&c.engine, &runnable).await;
        auditor.record(
            unready
                .iter()
                .map(|t| not_ready(t, "reads a model that has not been built; run `tally build` first"))
                .collect(),
        );
    }
    if auditor.outcomes().is_empty() {
        eprintln!("warning: the selection has no checks; nothing was tested");
    }
    let failed = finish(&c, "test", &run_id, &auditor, &[], start, gate, global.quiet).await?;
    Ok(if failed { 1 } else { 0 })
}

/// The error outcome of a singular test that cannot run.
pub(super) fn not_ready(t: &SingularTest, why: &str) -> assertions::Outcome {
    crate::audit::singular_assertion(t).outcome(Err(format!("`{}` {why}", t.name).into()))
}

/// Error outcomes for checks on a relation that was never built.
fn not_built(relation: &str, checks: &[Assertion]) -> Vec<Outcome> {
    let why = format!("`{relation}` has not been built; run `tally build` first");
    checks.iter().map(|a| a.outcome(Err(why.clone().into()))).collect()
}

/// Print the assertions' report, write run_results.json (and JUnit XML when
/// asked), publish the scorecard. Returns whether an error-level check failed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish(
    c: &Compiled,
    command: &str,
    run_id: &str,
    auditor: &Auditor,
    results: &[NodeResult],
    start: Instant,
    gate: &Gate,
    quiet: bool,
) -> Result<bool> {
    let outcomes = auditor.outcomes();
    if !outcomes.is_empty() {
        if let Err(e) = crate::scorecard::publish(&c.engine, &c.target, run_id, start_us(c), &outcomes).await
        {
            eprintln!("warning: {e}");
        }
        let text = crate::report::assertions(&outcomes);
        if quiet {
            println!("{}", text.lines().last().unwrap_or_default());
        } else {
            println!("{text}");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    crate::artifacts::write_run_results(c, command, run_id, elapsed, results, &outcomes, auditor.seconds())?;
    if let Some(path) = &gate.junit {
        std::fs::write(path, crate::report::junit(&outcomes, elapsed))
            .map_err(|e| Error::io("cannot write", path, e))?;
    }
    Ok(outcomes.iter().any(|o| o.blocks()))
}

fn start_us(c: &Compiled) -> i64 {
    c.run_started_at.timestamp_micros()
}
