//! `tally show <model>`: rows of a built model (or of a view over built models).

use datafusion::arrow::record_batch::RecordBatch;

use super::compile_project;
use crate::cli::{Global, ShowFormat};
use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};
use crate::materialize::{At, open_table};
use crate::render::quote_ident;
use crate::run::prepare_unselected;

/// `at`: a published version of a table (time travel); the latest by default.
pub async fn show(global: &Global, model: &str, limit: usize, format: ShowFormat, at: At) -> Result<()> {
    let c = compile_project(global).await?;
    let Some(node) = c.nodes.get(model) else {
        let hint = did_you_mean(model, c.nodes.keys().map(String::as_str)).unwrap_or_default();
        return Err(Error::Usage(format!("no model or seed named `{model}`. {hint}").trim_end().to_string()));
    };
    if !node.materialized.is_stored() && at != At::Latest {
        return Err(Error::Usage(format!(
            "`{model}` is a {}: only tables keep versions to travel to",
            node.materialized.as_str()
        )));
    }
    prepare_unselected(&c, &Default::default()).await;
    if node.materialized.is_stored() {
        let url = c.target.table_url(model);
        let provider = open_table(&c.engine, &url, at).await.map_err(|e| match at {
            At::Latest => Error::from(e),
            _ => {
                Error::Usage(format!("`{model}` has no such version: {}", crate::materialize::error_text(&e)))
            }
        })?;
        let Some(provider) = provider else {
            return Err(Error::Usage(format!(
                "`{model}` has not been built on target `{}` yet; run `tally build --select {model}`",
                c.target.name
            )));
        };
        c.engine.register(model, provider)?;
    }
    let mut sql = format!("SELECT * FROM {}", quote_ident(model));
    if limit > 0 {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    let batches = c.engine.collect(&sql).await?;
    print(&batches, format)
}

/// `--version N` / `--as-of TIME` (RFC 3339, `YYYY-MM-DD HH:MM:SS` or a date, UTC).
pub fn parse_at(version: Option<u64>, as_of: Option<&str>) -> Result<At> {
    match (version, as_of) {
        (Some(_), Some(_)) => Err(Error::Usage("give --version or --as-of, not both".into())),
        (Some(v), None) => Ok(At::Version(v)),
        (None, None) => Ok(At::Latest),
        (None, Some(t)) => {
            let parsed = chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.to_utc())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").map(|d| d.and_utc())
                })
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                });
            parsed.map(At::Time).map_err(|_| {
                Error::Usage(format!(
                    "--as-of {t}: use RFC 3339 (2025-06-30T12:00:00Z), `2025-06-30 12:00:00` or a date (UTC)"
                ))
            })
        }
    }
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
