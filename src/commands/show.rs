//! `tally show <model>`: rows of a built model (or of a view over built models).

use datafusion::arrow::record_batch::RecordBatch;

use super::compile_project;
use crate::cli::{Global, ShowFormat};
use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use crate::materialize::open_table;
use crate::render::quote_ident;
use crate::run::prepare_unselected;

pub async fn show(global: &Global, model: &str, limit: usize, format: ShowFormat) -> Result<()> {
    let c = compile_project(global).await?;
    let Some(node) = c.nodes.get(model) else {
        let hint = did_you_mean(model, c.nodes.keys().map(String::as_str)).unwrap_or_default();
        return Err(Error::Usage(format!("no model or seed named `{model}`. {hint}").trim_end().to_string()));
    };
    if node.materialized.is_stored() {
        let url = c.target.table_url(model);
        if open_table(&c.engine, &url, None).await?.is_none() {
            return Err(Error::Usage(format!("`{model}` has not been built on target `{}` yet; run `tally build --select {model}`", c.target.name)));
        }
    }
    prepare_unselected(&c, &Default::default()).await;
    let mut sql = format!("SELECT * FROM {}", quote_ident(model));
    if limit > 0 {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let batches = c.engine.ctx.sql(&sql).await?.collect().await?;
    print(&batches, format)
}

fn print(batches: &[RecordBatch], format: ShowFormat) -> Result<()> {
    use datafusion::arrow::{csv, json, util::pretty};
    let mut out = std::io::stdout().lock();
    let engine_err = |e: datafusion::arrow::error::ArrowError| Error::Engine(e.into());
    match format {
        ShowFormat::Table => println!("{}", pretty::pretty_format_batches(batches).map_err(engine_err)?),
        ShowFormat::Csv => {
            let mut w = csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b).map_err(engine_err)?;
            }
        }
        ShowFormat::Json => {
            let mut w = json::ArrayWriter::new(&mut out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs).map_err(engine_err)?;
            w.finish().map_err(engine_err)?;
            println!();
        }
    }
    Ok(())
}
