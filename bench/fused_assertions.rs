//! Fused assertions vs one query per assertion, same data, same run.
//!
//! Generates the raw tables at scale 10 (about 1M opportunities and 2.7M
//! history rows; cached under target/bench-data), compiles the reference
//! project over them, and evaluates every check declared on the sources and
//! staging views twice: as tally does (one aggregate scan per relation for all
//! its column-level checks) and the way dbt does (one query per check). Both
//! must find the same counts; the figure is the ratio of their wall times.
//!
//!     cargo bench --bench fused_assertions            # scale 10
//!     TALLY_BENCH_SCALE=1 cargo bench --bench fused_assertions

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use tally::assertions::{self, Assertion, Outcome};
use tally::compile::compile;
use tally::generate::{GenConfig, generate, write};

const RUNS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scale: f64 = std::env::var("TALLY_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join(format!("target/bench-data/scale-{scale}-seed-42"));
    if !data.join("crm_opportunities").exists() {
        eprintln!("generating scale {scale} into {} ...", data.display());
        write(&generate(&GenConfig { scale, ..GenConfig::default() }), &data)?;
    }

    let vars = BTreeMap::from([("raw_root".to_string(), serde_json::json!(data.display().to_string()))]);
    let project = tally::project::load(&root, &vars)?;
    let target = tally::profile::resolve(&project, None)?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let c = compile(project, target, threads).await?;
    tally::run::prepare_unselected(&c, &BTreeSet::new()).await;

    // Every check on the raw tables and on the staging views (no build needed).
    let mut checks: Vec<Assertion> = Vec::new();
    for ((s, t), table) in &c.project.sources {
        let relation = format!("{s}.{t}");
        checks.extend(
            table
                .tests
                .iter()
                .filter_map(|d| assertions::parse(&relation, &assertions::relation_sql(&relation), d).ok()),
        );
    }
    for (name, model) in c.project.models.iter().filter(|(n, _)| n.starts_with("stg_")) {
        checks.extend(
            model
                .tests
                .iter()
                .filter_map(|d| assertions::parse(name, &assertions::relation_sql(name), d).ok()),
        );
    }
    let relations: BTreeSet<&str> = checks.iter().map(|a| a.relation.as_str()).collect();
    let as_of = chrono::Utc::now().timestamp_micros();

    let mut fused_secs = Vec::new();
    let mut single_secs = Vec::new();
    let mut fused: Vec<Outcome> = Vec::new();
    let mut single: Vec<Outcome> = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        fused = assertions::evaluate(&c.engine, &checks, as_of, &Default::default())
            .await
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        fused_secs.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        single.clear();
        for a in &checks {
            single.extend(
                assertions::evaluate(&c.engine, std::slice::from_ref(a), as_of, &Default::default())
                    .await
                    .into_iter()
                    .map(|e| e.outcome),
            );
        }
        single_secs.push(start.elapsed().as_secs_f64());
    }
    for (f, s) in fused.iter().zip(&single) {
        let same = (f.status, f.rows_checked, f.failing_rows) == (s.status, s.rows_checked, s.failing_rows);
        if !same {
            return Err(format!(
                "{}: fused {:?}/{}/{} vs single {:?}/{}/{}",
                f.name, f.status, f.rows_checked, f.failing_rows, s.status, s.rows_checked, s.failing_rows
            )
            .into());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, s) = (median(&mut fused_secs), median(&mut single_secs));
    let rows: u64 = relations
        .iter()
        .map(|r| fused.iter().filter(|o| o.relation == *r).map(|o| o.rows_checked).max().unwrap_or(0))
        .sum();
    println!(
        "fused assertions vs one query per assertion (scale {scale}, {threads} threads, median of {RUNS})"
    );
    println!("  {} checks on {} relations ({rows} rows), identical counts", checks.len(), relations.len());
    println!("  {:<28} {:>8.3} s", "tally, fused per relation", f);
    println!("  {:<28} {:>8.3} s", "one query per assertion", s);
    println!("  ratio (one-per-assertion / fused): {:.2}x", s / f);
    Ok(())
}
