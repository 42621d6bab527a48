//! A checked view's rows, computed once per `tally build`.
//!
//! A view has no data of its own: checking it, and then building each model
//! that reads it, would execute it again every time (its dedupe window, its
//! joins). Instead `build` writes a checked view's rows once to local scratch
//! Parquet, checks those rows, and lets the rest of the run read them. The
//! models built from the view then read exactly the rows that were checked.
//! The scratch folder belongs to the run and is removed with it.

use std::path::Path;
use std::sync::Arc;

use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;

use crate::plan::{parquet_table, Engine};

/// Rows per scratch row group.
const SCRATCH_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Execute `plan` once into Parquet files under `dir` (created; emptied
/// first) and make `name` resolve to those files for the rest of the run.
pub async fn stage_view(engine: &Engine, name: &str, plan: LogicalPlan, dir: &Path) -> Result<(), DataFusionError> {
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
        stage_view(&engine, "v", plan.clone(), &dir.path().join("v")).await.unwrap();
        let batches = engine.ctx.sql("select count(*) as n, count(name) as named, sum(id) as s from v").await.unwrap().collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(text.contains("| 3 | 2     | 6 |"), "{text}");
        let staged = engine.ctx.table("v").await.unwrap();
        assert_eq!(staged.schema().as_arrow().fields(), plan.schema().as_arrow().fields());
        // Staging again replaces the rows, it does not add to them.
        stage_view(&engine, "v", plan, &dir.path().join("v")).await.unwrap();
        let n = engine.ctx.sql("select count(*) from v").await.unwrap().collect().await.unwrap();
        assert_eq!(n[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0), 3);
    }
}
