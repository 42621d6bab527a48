//! The plan a stored model is written by.
//!
//! delta-rs' writer plans a model's logical plan itself, and its optimizer
//! drops a top-level sort, since writing needs no order: a model's
//! `order by` was lost, and its rows were written in whatever order the
//! partitions finished. [`plan_write`] plans a model that yields its rows in
//! an order itself, and hands the writer that physical plan whole, as one
//! input it does not optimize again and writes as one stream: the files then
//! hold the rows in the model's order, as DuckDB writes them, and their
//! statistics let readers skip row groups by the sort key.
//!
//! Rows that reach the writer ordered by the key of a uniqueness check are
//! counted for the publish gate on the way ([`CountKeysExec`]): one
//! comparison per row with the row before (see [`KeyRuns`]), instead of
//! reading the key columns of the written files back and grouping them. The
//! counts stand for exactly the rows written: they are kept only from a
//! stream read to its end.
//!
//! [`KeyRuns`]: crate::assertions::KeyRuns

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::observe::{CountKeysExec, Observed, adjacent};
use crate::plan::Engine;

/// A model's plan, ready for [`write_table`](super::write_table).
pub struct WritePlan {
    pub plan: LogicalPlan,
    /// The plan yields its rows in one ordered stream, which the writer
    /// must keep as one (see [`plan_write`]).
    pub in_order: bool,
}

/// Duplicates counted as the rows are written, by key columns: filled as
/// the write runs.
pub type WrittenKeys = Vec<(Vec<String>, Observed)>;

/// A plan the writer plans itself, in no particular order, counting nothing.
impl From<LogicalPlan> for WritePlan {
    fn from(plan: LogicalPlan) -> Self {
        WritePlan { plan, in_order: false }
    }
}

/// `plan` as the writer should get it, and the keys it counts. When it ends in an `order by` and its
/// physical plan yields its rows in one ordered stream, that stream is
/// written as it is, and the duplicates of each of `keys` (key columns,
/// duplicated keys to keep) whose equal keys it yields adjacent are counted
/// as the rows pass; the other keys are left out. Otherwise the writer plans
/// `plan` itself, as it always did.
pub async fn plan_write(
    engine: &Engine,
    plan: LogicalPlan,
    keys: &[(Vec<String>, usize)],
) -> Result<(WritePlan, WrittenKeys)> {
    if !ends_in_sort(&plan) {
        return Ok((plan.into(), Vec::new()));
    }
    let state = engine.state();
    let mut physical = state.create_physical_plan(&plan).await?;
    let props = physical.properties();
    if props.output_ordering().is_none() || props.output_partitioning().partition_count() != 1 {
        return Ok((plan.into(), Vec::new()));
    }
    let mut counted = Vec::new();
    let ordered: Vec<_> = keys.iter().filter(|(key, _)| adjacent(&physical, key)).collect();
    for (key, keep) in ordered {
        let (exec, found) = CountKeysExec::new(physical, key, *keep);
        physical = Arc::new(exec);
        counted.push((key.clone(), found));
    }
    tracing::debug!(counted = ?counted.iter().map(|(key, _)| key).collect::<Vec<_>>(), "written in order");
    let planned = Arc::new(PlannedTable { plan: Arc::new(PlannedExec { plan: physical }) });
    let plan = LogicalPlanBuilder::scan("__tally_written", provider_as_source(planned), None)?.build()?;
    Ok((WritePlan { plan, in_order: true }, counted))
}

/// Whether `plan` sorts its rows last (an `order by`, under column
/// selections): only then is its order the model's, not an accident.
fn ends_in_sort(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            plan.inputs().first().is_some_and(|p| ends_in_sort(p))
        }
        _ => false,
    }
}

/// A table whose rows are those of a physical plan already made.
#[derive(Debug)]
struct PlannedTable {
    plan: Arc<dyn ExecutionPlan>,
}

#[async_trait]
impl TableProvider for PlannedTable {
    fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _: &dyn Session,
        projection: Option<&Vec<usize>>,
        _: &[Expr],
        _: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.plan.schema();
        match projection.filter(|p| !p.iter().copied().eq(0..schema.fields().len())) {
            None => Ok(self.plan.clone()),
            Some(p) => {
                let columns = p.iter().map(|&i| {
                    let name = schema.field(i).name().clone();
                    (Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>, name)
                });
                Ok(Arc::new(ProjectionExec::try_new(columns, self.plan.clone())?))
            }
        }
    }
}

/// A physical plan made and optimized already, shown to an outer plan as a
/// leaf: the outer plan's optimizer, which would drop its sort or split its
/// stream, cannot reach into it.
#[derive(Debug)]
struct PlannedExec {
    plan: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for PlannedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PlannedExec: {}", self.plan.name())
    }
}

impl ExecutionPlan for PlannedExec {
    fn name(&self) -> &str {
        "PlannedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.plan.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("PlannedExec has no inputs".into()))
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.plan.execute(partition, context)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use deltalake::protocol::SaveMode;

    use super::*;
    use crate::materialize::write_table;

    /// Rows of (k, v): keys a ×2, b ×3, c, and one null key.
    const ROWS: &str = "select * from (values ('b', 1), ('a', 1), (null, 1), ('b', 2), ('c', 1), ('b', 3), ('a', 2)) as t(k, v)";

    /// `sql` planned for writing, counting `k`; its rows, and what was counted.
    async fn write_counting(engine: &Engine, sql: &str) -> (usize, Vec<(Vec<String>, Observed)>) {
        let plan = engine.plan_sql(sql).await.unwrap();
        let (written, counted) = plan_write(engine, plan, &[(vec!["k".to_string()], 10)]).await.unwrap();
        let rows = engine.ctx().execute_logical_plan(written.plan).await.unwrap().collect().await.unwrap();
        (rows.iter().map(|b| b.num_rows()).sum(), counted)
    }

    #[tokio::test]
    async fn rows_written_in_key_order_are_counted_as_they_pass() {
        let engine = Engine::new(2);
        let (rows, counted) = write_counting(&engine, &format!("{ROWS} order by k, v")).await;
        assert_eq!(rows, 7, "every row still reaches the writer");
        let [(key, found)] = counted.as_slice() else { panic!("one key counted: {counted:?}") };
        assert_eq!(key, &["k".to_string()]);
        let counts = found.lock().unwrap().clone().expect("read to its end");
        // 6 rows with a key; a ×2 and b ×3 are 3 rows beyond their key's first.
        assert_eq!((counts.rows, counts.duplicates), (6, 3));
        let keys = datafusion::arrow::util::pretty::pretty_format_batches(&counts.keys).unwrap().to_string();
        assert!(keys.contains("| a | 2            |") && keys.contains("| b | 3            |"), "{keys}");
    }

    #[tokio::test]
    async fn rows_not_in_key_order_are_left_to_the_gate() {
        let engine = Engine::new(2);
        let (rows, counted) = write_counting(&engine, ROWS).await;
        assert_eq!(rows, 7);
        assert!(counted.is_empty(), "{counted:?}");
        // Ordered by another column first: equal keys need not be adjacent.
        let (_, counted) = write_counting(&engine, &format!("{ROWS} order by v, k")).await;
        assert!(counted.is_empty(), "{counted:?}");
    }

    #[tokio::test]
    async fn a_models_order_by_holds_in_the_written_files() {
        let engine = Engine::new(2);
        // A grouping over two partitions, then ordered: without the order
        // kept, the writer got both partitions' rows interleaved.
        let sql = "select x % 997 as k, count(*) as n from generate_series(1, 50000) as t(x) group by x % 997 order by k desc";
        let (plan, _) = plan_write(&engine, engine.plan_sql(sql).await.unwrap(), &[]).await.unwrap();
        assert!(plan.in_order);
        // Without an `order by`, the writer plans the model as it always did.
        let (unordered, _) =
            plan_write(&engine, engine.plan_sql(&sql.replace(" order by k desc", "")).await.unwrap(), &[])
                .await
                .unwrap();
        assert!(!unordered.in_order);
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        write_table(&engine, &url, "ordered", plan, SaveMode::Overwrite, None).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut keys = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let k = batch.column(0).as_primitive::<Int64Type>();
            keys.extend((0..k.len()).map(|i| k.value(i)));
        }
        assert_eq!(keys.len(), 997);
        assert!(keys.windows(2).all(|w| w[0] > w[1]), "not in the model's order: {:?}", &keys[..20]);
    }
}
