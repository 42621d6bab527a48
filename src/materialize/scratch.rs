//! A checked view's rows, computed once per `tally build`.
//!
//! A view has no data of its own: checking it, and then building each model
//! that reads it, would execute it again every time (its dedupe window, its
//! joins). Instead `build` keeps a checked view's rows once, checks those
//! rows, and lets the rest of the run read them. The models built from the
//! view then read exactly the rows that were checked.
//!
//! The rows are kept in memory, up to [`IN_MEMORY_BYTES`] over the views a
//! run holds at once, and beyond that in local scratch Parquet. Writing and
//! reading back Parquet (encoding, compressing, then decoding every string)
//! was most of what checking views added to a build; memory costs none of
//! it. A view's rows are released once no node left to run reads them (see
//! [`Scratch::release`]); the scratch folder belongs to the run and is
//! removed with it.
//!
//! Only the columns the run reads are staged: its checks', its readers'. A
//! staging view passes every raw column on (emails, names) while its readers
//! use a few. A failed check's stored rows of the view hold these columns too.
//!
//! The rows are kept as they stream from the plan, and its uniqueness
//! checks are counted on that stream when the plan orders it by their key
//! (see [`KeyRuns`]): a staging view's dedupe window already sorts by it, so
//! grouping the staged rows by key again would only repeat that work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::common::spawn_buffered;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::ident;
use futures::StreamExt;

use super::observe::{adjacent, observe};
use crate::assertions::{Counted, KeyCounts, KeyRuns};
use crate::plan::{Engine, parquet_table};

/// Rows per scratch row group.
const SCRATCH_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Bytes of staged rows a build keeps in memory, over all the views it holds
/// at once; the rows of a view that would pass it go to scratch Parquet.
/// At scale 10 of the reference project the checked views hold about 200 MB.
pub const IN_MEMORY_BYTES: usize = 512 << 20;

/// Where one build keeps its checked views' rows: in memory up to a limit
/// shared by the run, else under `dir` (`<target-path>/scratch/<run_id>/`),
/// which is removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub dir: PathBuf,
    limit: usize,
    /// View -> bytes of its rows held in memory.
    held: Mutex<BTreeMap<String, usize>>,
}

impl Scratch {
    pub fn new(dir: PathBuf, limit: usize) -> Self {
        Scratch { dir, limit, held: Mutex::new(BTreeMap::new()) }
    }

    /// Hold `bytes` more of `view`'s rows in memory, if the limit allows.
    fn hold(&self, view: &str, bytes: usize) -> bool {
        let Ok(mut held) = self.held.lock() else { return false };
        if held.values().sum::<usize>() + bytes > self.limit {
            return false;
        }
        *held.entry(view.to_string()).or_default() += bytes;
        true
    }

    /// `view`'s rows are no longer held in memory.
    fn forget(&self, view: &str) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(view);
        }
    }

    /// Bytes held in memory, over all views.
    pub fn held(&self) -> usize {
        self.held.lock().map(|h| h.values().sum()).unwrap_or_default()
    }

    /// No query of the run reads `view` any more: drop its rows, from memory
    /// or disk. (A plan still holding them keeps them until it ends.)
    pub fn release(&self, engine: &Engine, view: &str) {
        engine.deregister(view);
        self.forget(view);
        let _ = std::fs::remove_dir_all(self.dir.join(view));
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Execute `plan` once, keep its rows (in memory, or in Parquet files under
/// `scratch`'s folder for `name` when the memory limit is reached) and make
/// `name` resolve to them for the rest of the run. Only the columns that
/// `readers` (every SQL query of the run that reads `name`) read are staged;
/// all of them when `readers` is empty.
///
/// Duplicates of each key in `count.own` (key columns, duplicated keys to
/// keep) are counted on the rows as they stream from the plan, when it yields
/// them ordered by that key (a dedupe window sorted by it, say): the checks
/// then need not group the staged rows again. Keys the plan does not order by
/// are left out of the result. Each of `count.tables` is counted where the
/// plan sorts that whole table by the key (see [`observe`]), or not at all.
pub async fn stage_view(
    engine: &Engine,
    name: &str,
    plan: LogicalPlan,
    readers: &[String],
    scratch: &Scratch,
    count: &ToCount,
) -> Result<Staged, DataFusionError> {
    // The readers wait for this view: until it is staged, it is only its type.
    engine.register_placeholder(name, Arc::new(plan.schema().as_arrow().clone()))?;
    let plan = only_columns_read(engine, name, plan, readers).await?;
    scratch.forget(name);
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let mut state = engine.state();
    if !count.own.is_empty() {
        // A round-robin split after the dedupe window would interleave its
        // sorted rows; what follows it (a filter, a projection) is cheap.
        state.config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
    }
    let mut physical = state.create_physical_plan(&plan).await?;
    let mut observed = Vec::with_capacity(count.tables.len());
    for t in &count.tables {
        let reference = state
            .create_physical_plan(&state.create_logical_plan(&format!("select * from {}", t.table)).await?)
            .await?;
        let found;
        (physical, found) = observe(physical, &reference, &t.key, t.keep)?;
        observed.push(found);
    }
    let mut runs: Vec<KeyRuns> = count
        .own
        .iter()
        .filter(|(key, _)| adjacent(&physical, key))
        .filter_map(|(key, keep)| KeyRuns::new(&physical.schema(), key, *keep).ok())
        .collect();
    let tables: Vec<String> = count
        .tables
        .iter()
        .zip(&observed)
        .filter(|(_, o)| o.is_some())
        .map(|(t, _)| format!("{}{:?}", t.table, t.key))
        .collect();
    tracing::debug!(view = name, columns = schema.fields().len(), counted = ?runs.iter().map(KeyRuns::columns).collect::<Vec<_>>(), ?tables, "staging");
    // The plan runs in a task of its own, a batch or two ahead of this loop:
    // with round-robin splitting off, everything after its last merge is one
    // stream, which would otherwise only advance when the loop asks.
    let mut rows = spawn_buffered(execute_stream(physical, state.task_ctx())?, 2);
    let parts = state.config().target_partitions().max(1);
    let table = hold(scratch, name, &mut rows, &mut runs, schema, parts).await?;
    engine.register(name, table)?;
    let mut own = Counted::new();
    for r in runs {
        own.insert(r.columns().to_vec(), r.finish()?);
    }
    let tables =
        observed.into_iter().map(|o| o.and_then(|o| o.lock().ok().and_then(|mut c| c.take()))).collect();
    Ok(Staged { own, tables })
}

/// `plan` narrowed to the columns `readers` read of it (all when unknown).
async fn only_columns_read(
    engine: &Engine,
    name: &str,
    plan: LogicalPlan,
    readers: &[String],
) -> Result<LogicalPlan, DataFusionError> {
    Ok(match columns_read(engine, name, readers).await {
        Some(read) if read.len() < plan.schema().fields().len() => {
            let kept: Vec<_> = plan
                .schema()
                .fields()
                .iter()
                .filter(|f| read.contains(f.name()))
                .map(|f| ident(f.name()))
                .collect();
            LogicalPlanBuilder::from(plan).project(kept)?.build()?
        }
        _ => plan,
    })
}

/// Hold the view's `rows` in memory while the scratch budget allows, then in
/// scratch Parquet, counting `runs` as they pass; the table that reads them
/// (a memory table of `parts` partitions, or the spill files).
async fn hold(
    scratch: &Scratch,
    name: &str,
    rows: &mut SendableRecordBatchStream,
    runs: &mut [KeyRuns],
    schema: SchemaRef,
    parts: usize,
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    let produced = rows.schema();
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut spilled: Option<Spill> = None;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        for r in runs.iter_mut() {
            r.update(&batch)?;
        }
        if let Some(spill) = &mut spilled {
            spill.writer.write(&batch).await?;
        } else if scratch.hold(name, slice_bytes(&batch)?) {
            held.push(batch);
        } else {
            let mut spill = Spill::create(scratch, name, &produced).await?;
            for b in held.drain(..).chain([batch]) {
                spill.writer.write(&b).await?;
            }
            scratch.forget(name);
            spilled = Some(spill);
        }
    }
    Ok(match spilled {
        Some(spill) => {
            spill.writer.close().await?;
            Arc::new(parquet_table(ListingTableUrl::parse(format!("{}/", spill.dir.display()))?, schema)?)
        }
        None => {
            // As many partitions as the scans of a file would make, for readers to share the work.
            let mut partitions = vec![Vec::new(); parts];
            for (i, b) in held.into_iter().enumerate() {
                partitions[i % parts].push(b);
            }
            // The batches' own schema: the plan's, which may differ from the
            // logical plan's in nullability, and a memory table checks it.
            let schema = partitions.iter().flatten().next().map_or(schema, |b| b.schema());
            Arc::new(MemTable::try_new(schema, partitions)?)
        }
    })
}

/// A view's rows going to scratch Parquet, once memory is full.
struct Spill {
    dir: PathBuf,
    writer: AsyncArrowWriter<tokio::fs::File>,
}

impl Spill {
    async fn create(scratch: &Scratch, name: &str, schema: &SchemaRef) -> Result<Spill, DataFusionError> {
        let dir = scratch.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            DataFusionError::Execution(format!("cannot create scratch folder {}: {e}", dir.display()))
        })?;
        // Read back within seconds, from local disk: a fast codec and no
        // dictionaries (interning every string was the writer's largest
        // cost); small row groups, so the writer holds little in memory.
        let props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_enabled(false)
            .set_max_row_group_row_count(Some(SCRATCH_ROW_GROUP_ROWS))
            .build();
        let path = dir.join("part-0.parquet");
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| DataFusionError::Execution(format!("cannot create {}: {e}", path.display())))?;
        let writer = AsyncArrowWriter::try_new(file, schema.clone(), Some(props))?;
        Ok(Spill { dir, writer })
    }
}

/// Bytes of `batch`'s rows: of its slices of buffers, not the whole buffers,
/// which the batches cut from one buffer share.
fn slice_bytes(batch: &RecordBatch) -> Result<usize, DataFusionError> {
    let mut bytes = 0;
    for c in batch.columns() {
        bytes += c.to_data().get_slice_memory_size()?;
    }
    Ok(bytes)
}

/// What [`stage_view`] counts while it stages a view.
#[derive(Debug, Default)]
pub struct ToCount {
    /// The view's own duplicates checks: key columns, duplicated keys to keep.
    pub own: Vec<(Vec<String>, usize)>,
    /// Duplicates of tables the view reads.
    pub tables: Vec<TableKeys>,
}

/// A table whose duplicates of `key` a view's plan may count (see [`observe`]).
#[derive(Debug, Clone)]
pub struct TableKeys {
    /// The table as SQL, e.g. `"raw"."crm_leads"`.
    pub table: String,
    pub key: Vec<String>,
    /// Duplicated keys to keep.
    pub keep: usize,
}

/// What [`stage_view`] counted.
#[derive(Debug, Default)]
pub struct Staged {
    /// The view's own duplicates, by key (those the plan ordered).
    pub own: Counted,
    /// Each of [`ToCount::tables`], in order: None where it was not counted.
    pub tables: Vec<Option<KeyCounts>>,
}

/// The columns of table `name` that `readers` read, from the scans of it in
/// their optimized plans (projections and pushed-down filters). None when a
/// reader cannot be planned, or none reads a column (say, only `count(*)`).
async fn columns_read(engine: &Engine, name: &str, readers: &[String]) -> Option<BTreeSet<String>> {
    let state = engine.state();
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
        let scratch = Scratch::new(dir.path().to_path_buf(), IN_MEMORY_BYTES);
        stage_view(&engine, "v", plan.clone(), &[], &scratch, &ToCount::default()).await.unwrap();
        let text = totals(&engine).await;
        assert!(text.contains("| 3 | 2     | 6 |"), "{text}");
        let staged = engine.ctx().table("v").await.unwrap();
        assert_eq!(staged.schema().as_arrow().fields(), plan.schema().as_arrow().fields());
        // Staging again replaces the rows, it does not add to them.
        stage_view(&engine, "v", plan, &[], &scratch, &ToCount::default()).await.unwrap();
        let n = engine.ctx().sql("select count(*) from v").await.unwrap().collect().await.unwrap();
        assert_eq!(
            n[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0),
            3
        );
    }

    #[tokio::test]
    async fn only_the_columns_readers_read_are_staged() {
        let engine = Engine::new(2);
        let sql =
            "select * from (values (1, 'a', 10, true), (2, 'b', 20, false)) as t(id, name, amount, flag)";
        let plan = engine.plan_sql(sql).await.unwrap();
        // A projection, a filter, a subquery, however the view is named;
        // `flag` is read by none of them.
        let readers = [
            "select id, sum(amount) from v group by id".to_string(),
            "select count(*) from public.v where name = 'a' and id in (select id from datafusion.public.v)"
                .to_string(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path().to_path_buf(), IN_MEMORY_BYTES);
        stage_view(&engine, "v", plan.clone(), &readers, &scratch, &ToCount::default()).await.unwrap();
        assert_eq!(staged_columns(&engine).await, ["id", "name", "amount"]);
        let sum = engine
            .ctx()
            .sql("select sum(amount) from v where name = 'b'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(
            sum[0]
                .column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .value(0),
            20
        );

        // `select *` reads every column; so does staging for a reader that
        // does not plan, or for readers that read no column.
        for readers in [["select * from v"], ["select nope from v"], ["select count(*) from v"]] {
            let readers = readers.map(String::from);
            stage_view(&engine, "v", plan.clone(), &readers, &scratch, &ToCount::default()).await.unwrap();
            assert_eq!(staged_columns(&engine).await, ["id", "name", "amount", "flag"], "{readers:?}");
        }
    }

    #[tokio::test]
    async fn duplicates_are_counted_while_staging_rows_ordered_by_the_key() {
        let engine = Engine::new(2);
        let rows =
            "(values ('b', 1), ('a', 1), (null, 1), ('b', 2), ('c', 1), ('b', 3), (null, 2)) as t(id, n)";
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path().to_path_buf(), IN_MEMORY_BYTES);
        let count = ToCount {
            own: vec![
                (vec!["id".to_string()], 10),
                (vec!["id".to_string(), "n".to_string()], 10),
                (vec!["n".to_string()], 10),
            ],
            tables: vec![],
        };

        // Ordered by id: equal ids are adjacent, so (id) and (id, n) are
        // counted as the rows stream; (n) is not, it is left to a query.
        let plan = engine.plan_sql(&format!("select * from {rows} order by id, n")).await.unwrap();
        let counted = stage_view(&engine, "v", plan, &[], &scratch, &count).await.unwrap().own;
        assert_eq!(
            counted.keys().cloned().collect::<Vec<_>>(),
            [vec!["id".to_string()], vec!["id".to_string(), "n".to_string()]]
        );
        let by_id = &counted[&vec!["id".to_string()]];
        // Non-null ids: a, b, b, b, c: 5 rows, 3 distinct; b is kept, 3 times.
        assert_eq!((by_id.rows, by_id.duplicates), (5, 2));
        let keys = datafusion::arrow::util::pretty::pretty_format_batches(&by_id.keys).unwrap().to_string();
        assert!(keys.contains("| b  | 3            |"), "{keys}");
        let by_id_n = &counted[&vec!["id".to_string(), "n".to_string()]];
        assert_eq!((by_id_n.rows, by_id_n.duplicates, by_id_n.keys.len()), (5, 0, 0));
        // Every row was staged, in order.
        let n = engine.ctx().sql("select count(*) from v").await.unwrap().collect().await.unwrap();
        assert_eq!(
            n[0].column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0),
            7
        );

        // Unordered (a hash aggregate's output): nothing is counted.
        let plan = engine.plan_sql(&format!("select id, max(n) as n from {rows} group by id")).await.unwrap();
        let counted = stage_view(&engine, "v", plan, &[], &scratch, &count).await.unwrap().own;
        assert!(counted.is_empty(), "{:?}", counted.keys());
    }

    /// Rows of `v`, summed: n, count(name), sum(id).
    async fn totals(engine: &Engine) -> String {
        let batches = engine
            .ctx()
            .sql("select count(*) as n, count(name) as named, sum(id) as s from v")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
    }

    #[tokio::test]
    async fn rows_past_the_memory_limit_go_to_scratch_parquet_and_release_frees_them() {
        let engine = Engine::new(2);
        let dir = tempfile::tempdir().unwrap();
        let sql = "select * from (values (1, 'a'), (2, 'b'), (3, null)) as t(id, name)";
        let parquet_files =
            |view: &str| std::fs::read_dir(dir.path().join(view)).map(|d| d.count()).unwrap_or(0);

        // Room for the rows: they stay in memory, no file is written.
        let roomy = Scratch::new(dir.path().to_path_buf(), IN_MEMORY_BYTES);
        stage_view(&engine, "v", engine.plan_sql(sql).await.unwrap(), &[], &roomy, &ToCount::default())
            .await
            .unwrap();
        assert!(roomy.held() > 0);
        assert_eq!(parquet_files("v"), 0);
        assert!(totals(&engine).await.contains("| 3 | 2     | 6 |"));
        // Released: its bytes are given back and the name no longer resolves.
        roomy.release(&engine, "v");
        assert_eq!(roomy.held(), 0);
        assert!(engine.ctx().table("v").await.is_err());

        // No room: the same rows, read back from Parquet; release removes the file.
        let full = Scratch::new(dir.path().to_path_buf(), 0);
        stage_view(&engine, "v", engine.plan_sql(sql).await.unwrap(), &[], &full, &ToCount::default())
            .await
            .unwrap();
        assert_eq!((full.held(), parquet_files("v")), (0, 1));
        assert!(totals(&engine).await.contains("| 3 | 2     | 6 |"));
        full.release(&engine, "v");
        assert_eq!(parquet_files("v"), 0);
    }

    #[tokio::test]
    async fn a_view_with_no_rows_is_staged_empty_with_its_columns() {
        let engine = Engine::new(2);
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path().to_path_buf(), IN_MEMORY_BYTES);
        let plan =
            engine.plan_sql("select * from (values (1, 'a')) as t(id, name) where id > 5").await.unwrap();
        stage_view(&engine, "v", plan, &[], &scratch, &ToCount::default()).await.unwrap();
        assert_eq!(staged_columns(&engine).await, ["id", "name"]);
        assert!(totals(&engine).await.contains("| 0 | 0     |   |"), "{}", totals(&engine).await);
    }

    #[test]
    fn the_memory_limit_is_shared_by_the_views_held() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path().to_path_buf(), 100);
        assert!(scratch.hold("a", 60));
        assert!(!scratch.hold("b", 50), "60 + 50 passes the limit");
        assert!(scratch.hold("b", 40));
        scratch.forget("a");
        assert!(scratch.hold("b", 50));
        assert_eq!(scratch.held(), 90);
    }

    async fn staged_columns(engine: &Engine) -> Vec<String> {
        let staged = engine.ctx().table("v").await.unwrap();
        staged.schema().fields().iter().map(|f| f.name().clone()).collect()
    }
}
