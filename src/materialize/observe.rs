//! Counting a source table's duplicates inside a plan that already sorts it.
//!
//! A staging view's dedupe window sorts every row of its source by the key,
//! the same rows (those with a complete key) a source's duplicates check
//! groups by that key. [`observe`] finds that sorted stream in the view's
//! physical plan and puts a [`CountKeysExec`] above it, which passes the rows
//! on unchanged and counts their key runs with [`KeyRuns`]: the source's check
//! then needs no query of its own.
//!
//! The stream is observed only where the plan shows it is exactly the source:
//! every file of a full scan of it, at most a filter dropping rows with a null
//! key part, sorts, merges, repartitions and column selections in between,
//! and one partition ordered by the key's columns first. Counts are only taken
//! from a stream read to its end; anything else is left to the query.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, IsNotNullExpr};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use crate::assertions::{KeyCounts, KeyRuns};

/// What a [`CountKeysExec`] found, once its stream has ended.
pub type Observed = Arc<Mutex<Option<KeyCounts>>>;

/// Put a [`CountKeysExec`] counting `key` (keeping `keep` duplicated keys)
/// into `plan` above the first stream that is the whole of the table that
/// `reference` (the physical plan of `select * from <table>`) scans, ordered
/// by the key. The plan comes back unchanged, and no counts, when there is none.
pub fn observe(
    plan: Arc<dyn ExecutionPlan>,
    reference: &Arc<dyn ExecutionPlan>,
    key: &[String],
    keep: usize,
) -> Result<(Arc<dyn ExecutionPlan>, Option<Observed>)> {
    let Some(files) = single_scan(reference).and_then(scanned_files) else { return Ok((plan, None)) };
    let mut observed = None;
    let plan = plan
        .transform_down(|node| {
            if observed.is_some()
                || !adjacent(&node, key)
                || table_stream(&node, key).and_then(scanned_files).as_ref() != Some(&files)
            {
                return Ok(Transformed::no(node));
            }
            let (exec, found) = CountKeysExec::new(node, key, keep);
            observed = Some(found);
            Ok(Transformed::new(Arc::new(exec) as Arc<dyn ExecutionPlan>, true, TreeNodeRecursion::Jump))
        })?
        .data;
    Ok((plan, observed))
}

/// The only scan in `plan`, if it has exactly one.
fn single_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&DataSourceExec> {
    let mut scans = Vec::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        match node.downcast_ref::<DataSourceExec>() {
            Some(scan) => scans.push(scan),
            None => stack.extend(node.children()),
        }
    }
    (scans.len() == 1).then(|| scans[0])
}

/// Every file (and byte range) a scan reads, in a fixed order; None for a
/// scan that is not of files, or stops at a limit.
fn scanned_files(scan: &DataSourceExec) -> Option<Vec<String>> {
    let config = scan.data_source().downcast_ref::<FileScanConfig>().filter(|c| c.limit.is_none())?;
    let mut files: Vec<String> = config
        .file_groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|f| {
            format!(
                "{}{}",
                f.object_meta.location,
                f.range.as_ref().map(|r| format!("[{}..{})", r.start, r.end)).unwrap_or_default()
            )
        })
        .collect();
    files.sort();
    Some(files)
}

/// The scan under `node` when `node` yields every row of it that has a
/// complete `key`, unchanged: only sorts, merges, repartitions, column
/// selections and null-key filters in between.
fn table_stream<'a>(node: &'a Arc<dyn ExecutionPlan>, key: &[String]) -> Option<&'a DataSourceExec> {
    if node.fetch().is_some() {
        return None;
    }
    if let Some(scan) = node.downcast_ref::<DataSourceExec>() {
        let predicate = scan.downcast_to_file_source::<ParquetSource>().map(|(_, parquet)| parquet.filter());
        return match predicate {
            Some(None) => Some(scan),
            Some(Some(p)) if drops_null_keys(&p, key) => Some(scan),
            _ => None,
        };
    }
    let passes = if let Some(filter) = node.downcast_ref::<FilterExec>() {
        drops_null_keys(filter.predicate(), key)
    } else if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        projection.expr().iter().all(|p| p.expr.downcast_ref::<Column>().is_some_and(|c| c.name() == p.alias))
    } else {
        node.downcast_ref::<SortExec>().is_some()
            || node.downcast_ref::<SortPreservingMergeExec>().is_some()
            || node.downcast_ref::<CoalescePartitionsExec>().is_some()
            || node.downcast_ref::<RepartitionExec>().is_some()
    };
    match node.children().as_slice() {
        [child] if passes => table_stream(child, key),
        _ => None,
    }
}

/// Whether `predicate` only requires key columns to be non-null (rows the
/// duplicates check skips anyway).
fn drops_null_keys(predicate: &Arc<dyn PhysicalExpr>, key: &[String]) -> bool {
    split_conjunction(predicate).iter().all(|p| {
        p.downcast_ref::<IsNotNullExpr>()
            .and_then(|e| e.arg().downcast_ref::<Column>())
            .is_some_and(|c| key.iter().any(|k| k == c.name()))
    })
}

/// Passes its input on unchanged, counting the key runs of its one ordered
/// partition (see [`observe`]); the counts are kept once the input has ended,
/// and only if the input, as executed, yields equal keys adjacent.
#[derive(Debug)]
pub struct CountKeysExec {
    input: Arc<dyn ExecutionPlan>,
    key: Vec<String>,
    keep: usize,
    found: Observed,
}

impl CountKeysExec {
    /// Count `key`'s runs in `input`, keeping `keep` duplicated keys; what
    /// is found lands in the [`Observed`] returned.
    pub(super) fn new(input: Arc<dyn ExecutionPlan>, key: &[String], keep: usize) -> (Self, Observed) {
        let found: Observed = Arc::new(Mutex::new(None));
        (CountKeysExec { input, key: key.to_vec(), keep, found: found.clone() }, found)
    }
}

impl DisplayAs for CountKeysExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CountKeysExec: key=[{}]", self.key.join(", "))
    }
}

impl ExecutionPlan for CountKeysExec {
    fn name(&self) -> &str {
        "CountKeysExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .filter(|_| children.is_empty())
            .ok_or_else(|| DataFusionError::Internal("CountKeysExec has one input".into()))?;
        Ok(Arc::new(CountKeysExec {
            input,
            key: self.key.clone(),
            keep: self.keep,
            found: self.found.clone(),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let schema = self.input.schema();
        let input = self.input.execute(partition, context)?;
        // A plan optimized again inside another may lose its order: counts
        // are only taken from rows still in key order. A counting error (a
        // key type rows cannot hold) only means no counts either.
        let runs = adjacent(&self.input, &self.key)
            .then(|| KeyRuns::new(&schema, &self.key, self.keep).ok())
            .flatten();
        let found = self.found.clone();
        let counted =
            futures::stream::unfold((input, runs, found), |(mut input, mut runs, found)| async move {
                match input.next().await {
                    Some(Ok(batch)) => {
                        if runs.as_mut().is_some_and(|r| r.update(&batch).is_err()) {
                            runs = None;
                        }
                        Some((Ok(batch), (input, runs, found)))
                    }
                    Some(Err(e)) => Some((Err(e), (input, None, found))),
                    None => {
                        if let (Some(r), Ok(mut slot)) = (runs, found.lock()) {
                            *slot = r.finish().ok();
                        }
                        None
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}

/// Whether `plan` yields rows with equal `key`s adjacent: in one partition,
/// ordered by the key's columns first (in any order and direction).
pub(super) fn adjacent(plan: &Arc<dyn ExecutionPlan>, key: &[String]) -> bool {
    let props = plan.properties();
    let Some(ordering) =
        props.output_ordering().filter(|_| props.output_partitioning().partition_count() == 1)
    else {
        return false;
    };
    let leading: BTreeSet<&str> = ordering
        .iter()
        .take(key.len())
        .filter_map(|s| s.expr.downcast_ref::<Column>())
        .map(Column::name)
        .collect();
    !key.is_empty() && leading.len() == key.len() && key.iter().all(|c| leading.contains(c.as_str()))
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;
    use datafusion::prelude::ParquetReadOptions;

    use super::*;
    use crate::plan::Engine;

    /// `src`: two files of (k, v); keyed rows b, a, b | c, b, a: 6 rows, keys
    /// a ×2, b ×3, c: 3 rows beyond their key's first.
    async fn engine_with_source(dir: &std::path::Path) -> Engine {
        let engine = Engine::new(2);
        for (file, rows) in [
            ("part-0", "('b', 1), ('a', 1), (null, 1), ('b', 2)"),
            ("part-1", "('c', 1), ('b', 3), ('a', 2)"),
        ] {
            let copy = format!(
                "copy (select * from (values {rows}) as t(k, v)) to '{}/{file}.parquet' stored as parquet",
                dir.display()
            );
            engine.ctx().sql(&copy).await.unwrap().collect().await.unwrap();
        }
        engine
            .ctx()
            .register_parquet("src", dir.display().to_string(), ParquetReadOptions::default())
            .await
            .unwrap();
        engine
    }

    async fn physical(engine: &Engine, sql: &str) -> Arc<dyn ExecutionPlan> {
        let state = engine.ctx().state();
        state.create_physical_plan(&state.create_logical_plan(sql).await.unwrap()).await.unwrap()
    }

    /// `sql`'s physical plan with the counting put in, its rows, and the counts.
    async fn run(engine: &Engine, sql: &str) -> (bool, usize, Option<KeyCounts>) {
        let reference = physical(engine, "select * from src").await;
        let (plan, observed) =
            observe(physical(engine, sql).await, &reference, &["k".to_string()], 10).unwrap();
        let rows = collect(plan, engine.ctx().task_ctx()).await.unwrap().iter().map(|b| b.num_rows()).sum();
        let counts = observed.as_ref().and_then(|o| o.lock().unwrap().clone());
        (observed.is_some(), rows, counts)
    }

    const DEDUPE: &str = "select k, v from (select *, lag(k) over (order by k, v desc) is distinct from k as first from src where k is not null) r where first";

    #[tokio::test]
    async fn a_dedupe_window_counts_its_sources_duplicates_as_it_sorts_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_source(dir.path()).await;
        let (observed, rows, counts) = run(&engine, DEDUPE).await;
        assert!(observed);
        // The query's own answer is unchanged: one row per key.
        assert_eq!(rows, 3);
        let counts = counts.expect("counted");
        assert_eq!((counts.rows, counts.duplicates), (6, 3));
        let keys = datafusion::arrow::util::pretty::pretty_format_batches(&counts.keys).unwrap().to_string();
        assert!(keys.contains("| a | 2            |") && keys.contains("| b | 3            |"), "{keys}");
    }

    #[tokio::test]
    async fn only_a_whole_sorted_source_read_to_its_end_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_source(dir.path()).await;
        // Some of the source's rows only (a filter on another column): not observed.
        let some = DEDUPE.replace("where k is not null", "where k is not null and v > 1");
        assert!(!run(&engine, &some).await.0);
        // Rows not in key order (a hash aggregate): not observed.
        assert!(!run(&engine, "select k, count(*) from src group by k").await.0);
        // Observed, but its reader stops before the stream's end: no counts.
        let sorted = physical(&engine, "select k, v from src where k is not null order by k, v").await;
        let (plan, observed) =
            observe(sorted, &physical(&engine, "select * from src").await, &["k".to_string()], 10).unwrap();
        let mut stream = plan.execute(0, engine.ctx().task_ctx()).unwrap();
        assert!(stream.next().await.unwrap().unwrap().num_rows() > 0);
        drop(stream);
        assert!(observed.expect("observed").lock().unwrap().is_none());
    }
}
