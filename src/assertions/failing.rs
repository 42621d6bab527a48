//! The rows behind a failed check: a few of their keys for the console, and
//! up to `limit` whole rows written as Parquet to the run's audit folder.
//! Only failed and warned checks pay for these extra queries.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::dataframe::DataFrameWriteOptions;
use url::Url;

use super::{evaluate::filter, Assertion, Kind, Outcome};
use crate::plan::Engine;
use crate::render::quote_ident;

/// Keys shown per failed check.
pub const SAMPLE_ROWS: usize = 5;

/// SQL returning the failing rows of `a`, or None when the check is about the
/// relation as a whole (row count, freshness). A reconciliation's failing
/// rows are its mismatched groups.
pub fn failing_rows_sql(a: &Assertion) -> Option<String> {
    let (r, f) = (&a.relation_sql, filter(a));
    let cols = |c: &[String]| c.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
    Some(match &a.kind {
        Kind::Completeness { columns, .. } => {
            let any_null = cols(columns).iter().map(|c| format!("{c} is null")).collect::<Vec<_>>().join(" or ");
            format!("select * from {r} where {f} and ({any_null})")
        }
        Kind::Duplicates { columns, .. } => {
            let keys = cols(columns);
            let list = keys.join(", ");
            let not_null = keys.iter().map(|c| format!("{c} is not null")).collect::<Vec<_>>().join(" and ");
            let on = keys.iter().map(|c| format!("t.{c} = d.{c}")).collect::<Vec<_>>().join(" and ");
            format!(
                "select t.* from {r} t join (select {list} from {r} where {f} and {not_null} group by {list} having count(*) > 1) d on {on} where {f}"
            )
        }
        Kind::AcceptedValues { column, values } => {
            let c = quote_ident(column);
            format!("select * from {r} where {f} and {c} is not null and {c} not in ({})", values.join(", "))
        }
        Kind::Relationships { column, to, field } => {
            let c = quote_ident(column);
            format!(
                "select * from {r} child where {f} and child.{c} is not null and not exists (select 1 from {} parent where parent.{} = child.{c})",
                super::relation_sql(to),
                quote_ident(field)
            )
        }
        Kind::Expression { expr } => format!("select * from {r} where {f} and (({expr})) is false"),
        Kind::Custom { sql } => format!("select * from ({sql}) failing"),
        Kind::Reconciliation { tolerance, .. } => format!("select * from ({}) g where difference > {tolerance}", super::evaluate::reconciliation_sql(a)?),
        Kind::RowCount { .. } | Kind::Freshness { .. } => return None,
    })
}

/// Fill `o.sample` with up to [`SAMPLE_ROWS`] failing rows, shown by `key`
/// columns (the relation's key, then the checked columns), and store up to
/// `limit` failing rows at `<dir>/<assertion>.parquet`.
pub async fn collect(engine: &Engine, a: &Assertion, key: &[String], o: &mut Outcome, dir: &Url, limit: usize) {
    let Some(sql) = failing_rows_sql(a) else { return };
    match sample(engine, &sql, key).await {
        Ok(s) => o.sample = s,
        Err(e) => tracing::warn!("cannot sample the failing rows of {}: {e}", a.name),
    }
    if limit == 0 {
        return;
    }
    let url = format!("{dir}{}.parquet", a.name);
    let written = async {
        let df = engine.ctx.sql(&format!("select * from ({sql}) f limit {limit}")).await?;
        df.write_parquet(&url, DataFrameWriteOptions::new().with_single_file_output(true), None).await
    };
    match written.await {
        Ok(_) => o.failing_rows_path = Some(url),
        Err(e) => tracing::warn!("cannot store the failing rows of {} at {url}: {}", a.name, crate::plan::clean_message(&e)),
    }
}

async fn sample(engine: &Engine, sql: &str, key: &[String]) -> Result<Vec<String>, String> {
    let shown = if key.is_empty() { "*".to_string() } else { key.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ") };
    let df = engine.ctx.sql(&format!("select distinct {shown} from ({sql}) f limit {SAMPLE_ROWS}")).await.map_err(|e| crate::plan::clean_message(&e))?;
    let batches = df.collect().await.map_err(|e| crate::plan::clean_message(&e))?;
    Ok(batches.iter().flat_map(rows_as_text).collect())
}

/// Each row as `col=value, col=value`.
fn rows_as_text(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("null");
    let formatters: Vec<_> = batch.columns().iter().filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    let names: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    (0..batch.num_rows())
        .map(|row| names.iter().zip(&formatters).map(|(n, f)| format!("{n}={}", f.value(row))).collect::<Vec<_>>().join(", "))
        .collect()
}
