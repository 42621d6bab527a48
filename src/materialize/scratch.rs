//! A checked view's rows, computed once per `tally build`.
//!
//! A view has no data of its own: checking it, and then building each model
//! that reads it, would execute it again every time (its dedupe window, its
//! joins). Instead `build` writes a checked view's rows once to local scratch
//! Parquet, checks those rows, and lets the rest of the run read them. The
//! models built from the view then read exactly the rows that were checked.
//! The scratch folder belongs to the run and is removed with it.
//!
//! Only the columns the run reads are staged: its checks', its readers'. A
//! staging view passes every raw column on (emails, names) while its readers
//! use a few, and writing then reading back the rest was most of what staging
//! cost. A failed check's stored rows of the view hold these columns too.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::ident;

use crate::plan::{parquet_table, Engine};

/// Rows per scratch row group.
const SCRATCH_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Execute `plan` once into Parquet files under `dir` (created; emptied
/// first) and make `name` resolve to those files for the rest of the run.
/// Only the columns that `readers` (every SQL query of the run that reads
/// `name`) read are staged; all of them when `readers` is empty.
pub async fn stage_view(engine: &Engine, name: &str, plan: LogicalPlan, readers: &[String], dir: &Path) -> Result<(), DataFusionError> {
    // The readers wait for this view: until it is staged, it is only its type.
    engine.register_placeholder(name, Arc::new(plan.schema().as_arrow().clone()))?;
    let plan = match columns_read(engine, name, readers).await {
        Some(read) if read.len() < plan.schema().fields().len() => {
            let kept: Vec<_> = plan.schema().fields().iter().filter(|f| read.contains(f.name())).map(|f| ident(f.name())).collect();
            LogicalPlanBuilder::from(plan).project(kept)?.build()?
        }
        _ => plan,
    };
    tracing::debug!(view = name, columns = plan.schema().fields().len(), "staging");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| DataFusionError::Execution(format!("cannot create scratch folder {}: {e}", dir.display())))?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    // Read back within seconds, from local disk: a fast codec and no
    // dictionaries (interning every string was the writer's largest cost);
    // small row groups, so the writer holds little in memory meanwhile.
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("lz4_raw".into());
    options.global.max_row_group_size = SCRATCH_ROW_GROUP_ROWS;
    options.global.dictionary_enabled = Some(false);
    let folder = format!("{}/", dir.display());
    DataFrame::new(engine.ctx.state(), plan).write_parquet(&folder, DataFrameWriteOptions::new(), Some(options)).await?;
    engine.register(name, Arc::new(parquet_table(ListingTableUrl::parse(&folder)?, schema)?))
}

/// The columns of table `name` that `readers` read, from the scans of it in
/// their optimized plans (projections and pushed-down filters). None when a
/// reader cannot be planned, or none reads a column (say, only `count(*)`).
async fn columns_read(engine: &Engine, name: &str, readers: &[String]) -> Option<BTreeSet<String>> {
    let state = engine.ctx.state();
    let defaults = &state.config_options().catalog;
    let resolve = |t: &TableReference| t.clone().resolve(&defaults.default_catalog, &defaults.default_schema);
    let target = resolve(&TableReference::bare(name));
    let mut read = BTreeSet::new();
    for sql in readers {
        let plan = state.optimize(&engine.plan_sql(sql).await.ok()?).ok()?;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && resolve(&scan.table_name) == target
            {
                read.extend(scan.projected_schema.fields().iter().map(|f| f.name().clone()));
                read.extend(scan.filters.iter().flat_map(|f| f.column_refs()).map(|c| c.name.clone()));
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
    }
    (!read.is_empty()).then_some(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_staged_view_reads_back_its_rows_and_types() {
        let engine = Engine::new(2);
        let plan = engine
            .plan_sql("select * from (values (1, 'a'), (2, 'b'), (3, null)) as t(id, name)")
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        stage_view(&engine, "v", plan.clone(), &[], &dir.path().join("v")).await.unwrap();
        let batches = engine.ctx.sql("select count(*) as n, count(name) as named, sum(id) as s from v").await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 3 | 2     | 6 |"), "{text}");
        let staged = engine.ctx.table("v").await.unwrap();
        assert_eq!(staged.schema().as_arrow().fields(), plan.schema().as_arrow().fields());
        // Staging again replaces the rows, it does not add to them.
        stage_view(&engine, "v", plan, &[], &dir.path().join("v")).await.unwrap();
        let n = engine.ctx.sql("select count(*) from v").await.unwrap().collect().await.unwrap();
        assert_eq!(n[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0), 3);
    }

    #[tokio::test]
    async fn only_the_columns_readers_read_are_staged() {
        let engine = Engine::new(2);
        let sql = "select * from (values (1, 'a', 10, true), (2, 'b', 20, false)) as t(id, name, amount, flag)";
        let plan = engine.plan_sql(sql).await.unwrap();
        // A projection, a filter, a subquery, however the view is named;
        // `flag` is read by none of them.
        let readers = [
            "select id, sum(amount) from v group by id".to_string(),
            "select count(*) from public.v where name = 'a' and id in (select id from datafusion.public.v)".to_string(),
        ];
        let dir = tempfile::tempdir().unwrap();
        stage_view(&engine, "v", plan.clone(), &readers, &dir.path().join("v")).await.unwrap();
        assert_eq!(staged_columns(&engine).await, ["id", "name", "amount"]);
        let sum = engine.ctx.sql("select sum(amount) from v where name = 'b'").await.unwrap().collect().await.unwrap();
        assert_eq!(sum[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0), 20);

        // `select *` reads every column; so does staging for a reader that
        // does not plan, or for readers that read no column.
        for readers in [["select * from v"], ["select nope from v"], ["select count(*) from v"]] {
            let readers = readers.map(String::from);
            stage_view(&engine, "v", plan.clone(), &readers, &dir.path().join("v")).await.unwrap();
            assert_eq!(staged_columns(&engine).await, ["id", "name", "amount", "flag"], "{readers:?}");
        }
    }

    async fn staged_columns(engine: &Engine) -> Vec<String> {
        let staged = engine.ctx.table("v").await.unwrap();
        staged.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
}
