//! SPEC §4.7: every run that evaluates assertions publishes `dq_scorecard`
//! (this run's outcomes, replaced each run) and appends the same rows to
//! `dq_history`, so completeness, duplicate rates and freshness can be charted
//! over time. Both are Delta tables in the warehouse, like any model.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::protocol::SaveMode;

use crate::assertions::Outcome;
use crate::materialize::{WriteError, Written, write_table};
use crate::plan::Engine;
use crate::profile::Target;

pub const SCORECARD: &str = "dq_scorecard";
pub const HISTORY: &str = "dq_history";

/// The scorecard rows of one run.
pub fn batch(
    run_id: &str,
    run_started_at_us: i64,
    outcomes: &[Outcome],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&Outcome) -> String| {
        Arc::new(StringArray::from_iter_values(outcomes.iter().map(f))) as ArrayRef
    };
    let n = outcomes.len();
    let schema = Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("run_started_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("relation", DataType::Utf8, false),
        Field::new("assertion", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_checked", DataType::Int64, false),
        Field::new("failing_rows", DataType::Int64, false),
        Field::new("observed", DataType::Float64, true),
        Field::new("threshold", DataType::Utf8, false),
    ]);
    let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            text(&|_| run_id.to_string()),
            Arc::new(TimestampMicrosecondArray::from(vec![run_started_at_us; n]).with_timezone("UTC")),
            text(&|o| o.relation.clone()),
            text(&|o| o.name.clone()),
            text(&|o| o.kind.to_string()),
            text(&|o| o.columns.clone()),
            text(&|o| match o.severity {
                crate::assertions::Severity::Warn => "warn".into(),
                crate::assertions::Severity::Error => "error".into(),
            }),
            text(&|o| o.status_word().to_string()),
            Arc::new(Int64Array::from_iter_values(outcomes.iter().map(|o| count(o.rows_checked)))),
            Arc::new(Int64Array::from_iter_values(outcomes.iter().map(|o| count(o.failing_rows)))),
            // An empty relation's freshness lag is infinite: stored as null.
            Arc::new(Float64Array::from_iter(
                outcomes.iter().map(|o| o.observed.is_finite().then_some(o.observed)),
            )),
            text(&|o| o.threshold.clone()),
        ],
    )
}

/// Replace `dq_scorecard` and append to `dq_history`.
pub async fn publish(
    engine: &Engine,
    target: &Target,
    run_id: &str,
    run_started_at_us: i64,
    outcomes: &[Outcome],
) -> Result<Written, ScorecardError> {
    let failed = |table: &'static str| move |why: String| ScorecardError { table, why };
    let batch = batch(run_id, run_started_at_us, outcomes).map_err(|e| failed(SCORECARD)(e.to_string()))?;
    let mut written = Written::default();
    for (name, mode) in [(SCORECARD, SaveMode::Overwrite), (HISTORY, SaveMode::Append)] {
        let plan = engine.batches_plan(vec![batch.clone()]).map_err(|e| failed(name)(e.to_string()))?;
        written = match write_table(engine, &target.table_url(name), name, plan.into(), mode, None).await {
            Ok(published) => published.written,
            Err(WriteError::Delta(e)) => return Err(failed(name)(crate::materialize::error_text(&e))),
            Err(e) => return Err(failed(name)(e.to_string())),
        };
    }
    Ok(written)
}

/// A data-quality table that could not be published (the run's outcomes
/// stand; only the table is missing).
#[derive(Debug, thiserror::Error)]
#[error("cannot publish {table}: {why}")]
pub struct ScorecardError {
    pub table: &'static str,
    pub why: String,
}
