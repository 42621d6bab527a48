//! `EXPLAIN ANALYZE` one model of the reference project, as `tally run` would
//! execute it (its upstream views inlined, its upstream tables read from the
//! warehouse of the target): the tool the benchmark's profiling starts from.
//!
//!     cargo run --release --example explain -- <model> [raw_root] [target]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().ok_or("usage: explain <model> [raw_root] [target]")?;
    let mut vars = BTreeMap::new();
    if let Some(raw) = args.get(1) {
        vars.insert("raw_root".to_string(), serde_json::json!(raw));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let project = tally::project::load(&root, &vars)?;
    let target = tally::profile::resolve(&project, args.get(2).map(String::as_str))?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let c = tally::compile::compile(project, target, threads).await?;
    let mut selected = BTreeSet::new();
    selected.insert(model.clone());
    tally::run::prepare_unselected(&c, &selected).await;
    let node = c.nodes.get(model).ok_or("no such model")?;
    let df = c.engine.ctx.sql(&format!("explain analyze {}", node.sql)).await?;
    datafusion::arrow::util::pretty::print_batches(&df.collect().await?)?;
    Ok(())
}
