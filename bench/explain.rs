//! `EXPLAIN ANALYZE` one model of the reference project, as `tally run` would
//! execute it (its upstream views inlined, its upstream tables read from the
//! warehouse of the target): the tool the benchmark's profiling starts from.
//!
//!     cargo run --release --example explain -- <model or query> [raw_root] [target]

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
    // A model's name, or any query over the project's relations.
    let sql = match c.nodes.get(model) {
        Some(node) => node.sql.clone(),
        None if model.contains(' ') => model.clone(),
        None => return Err("no such model".into()),
    };
    let batches = c.engine.collect(&format!("explain analyze {sql}")).await?;
    datafusion::arrow::util::pretty::print_batches(&batches)?;
    Ok(())
}
