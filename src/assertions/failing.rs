//! The rows behind a failed check: a few of their keys for the console, and
//! up to `limit` whole rows written as Parquet to the run's audit folder.
//! Only failed and warned checks pay for these extra queries.

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::JoinType;
use datafusion::error::DataFusionError;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::Accumulator;
use datafusion::logical_expr::utils::conjunction;
use datafusion::prelude::{Expr, SessionContext, ident, lit};
use url::Url;

use super::check::{Assertion, DEFAULT_LIMIT, Outcome, SAMPLE_ROWS};
use super::evaluate::first_rows;
use super::key_runs::KEY_ROWS;
use super::kinds::Kind;
use crate::plan::Engine;
use crate::render::quote_ident;

/// SQL returning the failing rows of `a`, or None when the check is about the
/// relation as a whole (row count, freshness). A reconciliation's failing
/// rows are its mismatched groups.
pub fn failing_rows_sql(a: &Assertion) -> Option<String> {
    a.kind.check().failing_rows(&a.scope())
}

/// `a` as one query of its own, the way dbt runs a test: the number of failing
/// rows, or for whole-relation checks the row count or the newest instant.
pub fn one_query_sql(a: &Assertion) -> String {
    let (r, f) = (&a.relation_sql, a.scope().where_sql());
    match (&a.kind, failing_rows_sql(a)) {
        (Kind::Freshness(fresh), _) => {
            format!("select max({}) as newest from {r} where {f}", quote_ident(&fresh.column))
        }
        (_, Some(rows)) => format!("select count(*) as failures from (\n{rows}\n) failing"),
        (_, None) => format!("select count(*) as row_count from {r} where {f}"),
    }
}

/// Fill `o.sample` with up to [`SAMPLE_ROWS`] failing rows, shown by `key`
/// columns (the relation's key, then the checked columns), and store up to
/// `limit` (default [`DEFAULT_LIMIT`]) failing rows at `<dir>/<assertion>.parquet`.
/// A duplicates check's rows are those with the `duplicated_keys` it found.
pub async fn collect(
    engine: &Engine,
    a: &Assertion,
    key: &[String],
    o: &mut Outcome,
    dir: &Url,
    duplicated_keys: Vec<RecordBatch>,
) {
    // One query for both: the failing rows are read once, up to the limit.
    let rows = match (&a.kind, failing_rows_sql(a)) {
        (Kind::Duplicates(d), _) => rows_with_keys(engine, a, &d.columns, duplicated_keys).await,
        (_, Some(sql)) => engine.collect(&format!("select * from ({sql}) f limit {}", a.rows_kept())).await,
        (_, None) => return,
    };
    let batches = match rows {
        Ok(b) => b,
        Err(e) => {
            return tracing::warn!(
                "cannot read the failing rows of {}: {}",
                a.name,
                crate::plan::clean_message(&e)
            );
        }
    };
    o.sample = sample(&batches, key);
    let kept = first_rows(&batches, a.limit.unwrap_or(DEFAULT_LIMIT));
    if kept.is_empty() {
        return;
    }
    let url = format!("{dir}{}.parquet", a.name);
    match engine.write_parquet_file(kept, &url).await {
        Ok(_) => o.failing_rows_path = Some(url),
        Err(e) => tracing::warn!(
            "cannot store the failing rows of {} at {url}: {}",
            a.name,
            crate::plan::clean_message(&e)
        ),
    }
}

/// Up to [`Assertion::rows_kept`] rows of `a`'s relation (within its filter)
/// whose `columns` hold one of `keys`: a semi join on a few keys, where
/// [`failing_rows_sql`] would group the whole relation again. Only the first
/// keys whose rows all fit are joined, so that every stored key shows all of
/// its duplicates (not the first row of many keys).
async fn rows_with_keys(
    engine: &Engine,
    a: &Assertion,
    columns: &[String],
    keys: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let keys = keys_whose_rows_fit(&keys, a.rows_kept());
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // The join's filter on the few keys is applied while the key columns are
    // decoded, so the other columns are decoded only for the matching rows.
    let mut state = engine.state();
    state.config_mut().options_mut().execution.parquet.pushdown_filters = true;
    let ctx = SessionContext::new_with_state(state);
    let key_col = |i: usize| format!("__tally_key{i}");
    let range = within_range_of(&keys, columns);
    let keys = ctx
        .read_batches(keys)?
        .select(columns.iter().enumerate().map(|(i, c)| ident(c).alias(key_col(i))).collect::<Vec<_>>())?;
    let on: Vec<Expr> = columns.iter().enumerate().map(|(i, c)| ident(c).eq(ident(key_col(i)))).collect();
    ctx.sql(&format!("select * from {} where {}", a.relation_sql, a.scope().where_sql()))
        .await?
        .filter(range)?
        .join_on(keys, JoinType::LeftSemi, on)?
        .limit(0, Some(a.rows_kept()))?
        .collect()
        .await
}

/// Each of `columns` between its least and its greatest value in `keys`.
/// The join filters the scan by the keys too, but only as it reads; this
/// filter is known when the scan is planned, so the scan skips the row groups
/// and pages whose statistics lie outside it. The keys kept are the first in
/// key order, so in data sorted or clustered by its key they lie in a few pages.
/// A column whose bounds cannot be taken (or a float column, whose NaN and
/// signed zeros make a range a doubtful filter) is not restricted.
fn within_range_of(keys: &[RecordBatch], columns: &[String]) -> Expr {
    let bounds = |c: &String| -> Result<Option<Expr>, DataFusionError> {
        let values: Vec<&ArrayRef> = keys.iter().filter_map(|b| b.column_by_name(c)).collect();
        let Some(data_type) = values.first().map(|v| v.data_type()).filter(|t| !t.is_floating()) else {
            return Ok(None);
        };
        let (mut least, mut greatest) =
            (MinAccumulator::try_new(data_type)?, MaxAccumulator::try_new(data_type)?);
        for v in values {
            least.update_batch(std::slice::from_ref(v))?;
            greatest.update_batch(std::slice::from_ref(v))?;
        }
        Ok(Some(ident(c).between(lit(least.evaluate()?), lit(greatest.evaluate()?))))
    };
    conjunction(columns.iter().filter_map(|c| bounds(c).ok().flatten())).unwrap_or(lit(true))
}

/// The first of `keys` (a duplicates check's, with their row counts in
/// [`KEY_ROWS`]) whose rows add up to at most `n`; at least the first key.
fn keys_whose_rows_fit(keys: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    let mut rows = 0;
    let mut fitting = 0;
    'batches: for b in keys {
        let Some(counts) = b.column_by_name(KEY_ROWS).and_then(|c| c.as_primitive_opt::<Int64Type>()) else {
            return first_rows(keys, n);
        };
        for c in counts.iter() {
            rows += usize::try_from(c.unwrap_or(1)).unwrap_or(1);
            if rows > n && fitting > 0 {
                break 'batches;
            }
            fitting += 1;
        }
    }
    first_rows(keys, fitting)
}

/// Up to [`SAMPLE_ROWS`] distinct failing rows, shown by their `key` columns
/// (every column when there is no key).
fn sample(batches: &[RecordBatch], key: &[String]) -> Vec<String> {
    let mut shown: Vec<String> = Vec::new();
    for batch in batches {
        let batch = if key.is_empty() {
            batch.clone()
        } else {
            let indices: Vec<usize> =
                key.iter().filter_map(|k| batch.schema_ref().index_of(k).ok()).collect();
            match batch.project(&indices) {
                Ok(b) => b,
                Err(_) => continue,
            }
        };
        for row in rows_as_text(&batch) {
            if shown.len() == SAMPLE_ROWS {
                return shown;
            }
            if !shown.contains(&row) {
                shown.push(row);
            }
        }
    }
    shown
}

/// Each row as `col=value, col=value`.
fn rows_as_text(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("null");
    let formatters: Vec<_> =
        batch.columns().iter().filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
    let names: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    (0..batch.num_rows())
        .map(|row| {
            names
                .iter()
                .zip(&formatters)
                .map(|(n, f)| format!("{n}={}", f.value(row)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))],
        )
        .unwrap()
    }

    #[test]
    fn sample_shows_distinct_keys_across_batches() {
        let batches =
            [batch(&[1, 1, 2], &["a", "b", "c"]), batch(&[3, 4, 5, 6, 7], &["d", "e", "f", "g", "h"])];
        assert_eq!(sample(&batches, &["id".to_string()]), ["id=1", "id=2", "id=3", "id=4", "id=5"]);
        assert_eq!(sample(&batches[..1], &[]), ["id=1, name=a", "id=1, name=b", "id=2, name=c"]);
    }

    #[test]
    fn only_keys_whose_rows_all_fit_are_kept() {
        let keys = |ids: &[i64], counts: &[i64]| {
            let schema = Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new(KEY_ROWS, DataType::Int64, false),
            ]);
            RecordBatch::try_new(
                Arc::new(schema),
                vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(Int64Array::from(counts.to_vec()))],
            )
            .unwrap()
        };
        let batches = [keys(&[1, 2], &[2, 3]), keys(&[3, 4], &[2, 9])];
        let kept = |n: usize| keys_whose_rows_fit(&batches, n).iter().map(|b| b.num_rows()).sum::<usize>();
        // 2 + 3 + 2 rows fit in 7 or 8; the fourth key's 9 rows would not.
        assert_eq!((kept(7), kept(8), kept(100)), (3, 3, 4));
        assert_eq!((kept(4), kept(5)), (1, 2));
        // A first key with more rows than fit is kept all the same (its first rows are stored).
        assert_eq!(kept(1), 1);
    }

    #[test]
    fn the_keys_range_bounds_each_key_column_but_floats() {
        let keys = |ids: &[i64], names: &[&str], amounts: &[f64]| {
            let schema = Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("amount", DataType::Float64, false),
            ]);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Float64Array::from(amounts.to_vec())),
            ];
            RecordBatch::try_new(Arc::new(schema), columns).unwrap()
        };
        // The least and greatest of each column over both batches, not their first and last rows.
        let batches =
            [keys(&[3, 1], &["m", "z"], &[1.0, f64::NAN]), keys(&[7, 2], &["b", "k"], &[0.0, -0.0])];
        let columns = ["id", "name", "amount", "missing"].map(String::from);
        assert_eq!(
            within_range_of(&batches, &columns).to_string(),
            "id BETWEEN Int64(1) AND Int64(7) AND name BETWEEN Utf8(\"b\") AND Utf8(\"z\")"
        );
        assert_eq!(within_range_of(&batches, &columns[2..]), lit(true));
    }

    #[test]
    fn first_rows_stops_at_the_limit() {
        let batches = [batch(&[1, 2, 3], &["a", "b", "c"]), batch(&[4, 5], &["d", "e"])];
        assert_eq!(first_rows(&batches, 4).iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [3, 1]);
        assert!(first_rows(&batches, 0).is_empty());
    }
}
