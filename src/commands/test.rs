//! `tally test`: assertions on published tables (and views over them).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use super::{compile_project, resolve_selection};
use crate::assertions::{self, Assertion, Outcome, Status};
use crate::cli::{Global, Selection};
use crate::compile::Compiled;
use crate::error::{Error, Result};
use crate::project::TestDecl;
use crate::run::prepare_unselected;

/// `only_freshness`: `tally freshness`, the sources' freshness checks alone.
pub async fn test(global: &Global, sel: &Selection, junit: Option<&Path>, only_freshness: bool) -> Result<i32> {
    let start = Instant::now();
    let c = compile_project(global).await?;
    let chosen = resolve_selection(&c, sel)?;
    // Every node resolves to what the warehouse holds; `unbuilt` never published.
    let unbuilt = prepare_unselected(&c, &BTreeSet::new()).await;

    let mut parsed: Vec<Assertion> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut add = |relation: &str, decls: &[TestDecl], unbuilt: bool| {
        for d in decls {
            match assertions::parse(relation, &assertions::relation_sql(relation), d) {
                Ok(a) if unbuilt => outcomes.push(a.outcome(Err(format!("`{relation}` has not been built; run `tally build` first")))),
                Ok(a) => parsed.push(a),
                Err(diag) => outcomes.push(Outcome::invalid(relation, d, diag.headline())),
            }
        }
    };
    for name in c.dag.topo_order().filter(|n| chosen.contains(*n)) {
        let decls = c.project.models.get(name).map(|m| &m.tests).or_else(|| c.project.seeds.get(name).map(|s| &s.tests));
        let never_built = unbuilt.contains(name) || c.dag.ancestors(name).iter().any(|a| unbuilt.contains(a));
        add(name, decls.map(Vec::as_slice).unwrap_or_default(), never_built);
    }
    if sel.select.is_empty() {
        for ((s, t), decl) in &c.project.sources {
            let used = c.sources.contains_key(&(s.clone(), t.clone()));
            add(&format!("{s}.{t}"), &decl.tests, !used);
        }
    }
    if only_freshness {
        parsed.retain(|a| matches!(a.kind, assertions::Kind::Freshness { .. }));
        outcomes.retain(|o| o.kind == "freshness");
    }
    // Two checks of the same kind on the same columns get `_2`, `_3`... (dbt adds a hash).
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for a in parsed.iter_mut() {
        let n = seen.entry(a.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            a.name = format!("{}_{n}", a.name);
        }
    }
    outcomes.extend(assertions::evaluate(&c.engine, &parsed, as_of_us(&c)).await);
    report(&c, &outcomes, start.elapsed().as_secs_f64(), junit)
}

/// SPEC §3: with an `as_of` var, the end of that day (UTC); otherwise now.
fn as_of_us(c: &Compiled) -> i64 {
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

fn report(c: &Compiled, outcomes: &[Outcome], elapsed: f64, junit: Option<&Path>) -> Result<i32> {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(["status", "assertion", "failing", "checked", "observed", "threshold"]);
    for o in outcomes {
        let status = match o.status {
            Status::Fail | Status::Error => o.status_word().to_uppercase(),
            _ => o.status_word().to_string(),
        };
        table.add_row(vec![status, o.name.clone(), o.failing_rows.to_string(), o.rows_checked.to_string(), format!("{:.4}", o.observed), o.threshold.clone()]);
    }
    println!("{table}");
    for o in outcomes.iter().filter(|o| matches!(o.status, Status::Fail | Status::Error | Status::Warn)) {
        let what = o.message.clone().unwrap_or_else(|| format!("{} failing of {} rows", o.failing_rows, o.rows_checked));
        println!("{}: {} {}:{}: {what}", o.status_word(), o.name, o.file, o.line);
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    println!(
        "Done in {elapsed:.2}s: {} pass, {} warn, {} fail, {} error",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Error)
    );
    crate::artifacts::write_test_results(c, elapsed, outcomes)?;
    if let Some(path) = junit {
        std::fs::write(path, crate::report::junit(outcomes, elapsed)).map_err(|e| Error::io("cannot write", path, e))?;
    }
    Ok(if count(Status::Fail) + count(Status::Error) > 0 { 1 } else { 0 })
}
