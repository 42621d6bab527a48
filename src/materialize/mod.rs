//! Write a node's result as a Delta Lake table, and open stored tables.
//!
//! The model's plan is handed to delta-rs' writer, which executes it in
//! DataFusion and streams record batches into zstd Parquet files; nothing is
//! collected whole in memory. A model that ends in an `order by` is planned
//! first, so that its files keep that order (see [`plan_write`]). The files
//! become visible in one atomic commit (`_delta_log/N.json`), so a reader
//! sees the previous version or the new one.
//! With an [`Audit`], that commit goes through the [publish gate](gate): the
//! written files are checked first and published only if they pass.

mod gate;
mod observe;
mod scratch;
mod write_plan;

pub use gate::{Audit, Passed, Rejected, StagedWrite};
pub use observe::Observed;
pub use scratch::{IN_MEMORY_BYTES, Scratch, Staged, TableKeys, ToCount, stage_view};
pub use write_plan::{WritePlan, WrittenKeys, plan_write};

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::plan::Engine;

/// Rows per Parquet row group: large enough for good compression and cheap
/// footers, small enough that the writer's buffer stays modest.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub version: u64,
}

/// A write that landed: what it wrote, and the audit's note (its warnings).
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub written: Written,
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The audit rejected the staged write: nothing was published.
    #[error("not published, the previous version stays: {0}")]
    Rejected(Rejected),
    #[error(transparent)]
    Delta(#[from] DeltaTableError),
}

/// Replace (or with `SaveMode::Append`, extend) the table at `url` with the
/// result of `plan` (see [`plan_write`]), in one commit; with `audit`, only
/// if the audit of the staged write passes (see [`gate`]).
pub async fn write_table(
    engine: &Engine,
    url: &Url,
    name: &str,
    plan: WritePlan,
    mode: SaveMode,
    audit: Option<Arc<dyn Audit>>,
) -> Result<Published, WriteError> {
    if url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
    {
        std::fs::create_dir_all(&path)
            .map_err(|e| DeltaTableError::Generic(format!("cannot create {}: {e}", path.display())))?;
    }
    let mut store = DeltaTableBuilder::from_url(url.clone())?
        .with_storage_options(engine.storage.as_map())
        .build_storage()?;
    let write = Arc::new(gate::GatedWrite::default());
    if let Some(audit) = audit {
        store = gate::AuditedLogStore::wrap(store, audit, write.clone());
    }
    let mut table = DeltaTable::new(store);
    match table.load().await {
        Ok(()) | Err(DeltaTableError::NotATable(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if let Ok(snapshot) = table.snapshot() {
        let files = snapshot.log_data().iter().filter_map(|f| url.join(f.path().as_ref()).ok()).collect();
        let _ = write.current.set(files);
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| DeltaTableError::Generic(e.to_string()))?,
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut state = engine.state();
    if plan.in_order {
        // One ordered stream stays one: split, its parts would interleave in the file.
        state.config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
    }
    let written = table
        .write(Vec::new())
        .with_input_plan(plan.plan)
        .with_session_state(Arc::new(state))
        .with_save_mode(mode)
        .with_schema_mode(if mode == SaveMode::Overwrite { SchemaMode::Overwrite } else { SchemaMode::Merge })
        .with_writer_properties(props)
        .with_table_name(name)
        .with_commit_properties(CommitProperties::default())
        .await;
    let table = match (written, write.verdict.get()) {
        (Ok(table), _) => table,
        (Err(_), Some(Err(rejected))) => return Err(WriteError::Rejected(rejected.clone())),
        (Err(e), _) => return Err(e.into()),
    };
    let mut written = Written { version: table.version().unwrap_or(0), ..Written::default() };
    let snapshot = table.snapshot()?;
    for file in snapshot.log_data().iter() {
        written.files += 1;
        written.bytes += u64::try_from(file.size()).unwrap_or(0);
        written.rows += file.stats().as_deref().and_then(num_records).unwrap_or(0);
    }
    let note = write.verdict.get().and_then(|v| v.as_ref().ok()).and_then(|p| p.note.clone());
    Ok(Published { written, note })
}

fn num_records(stats: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(stats).ok()?.get("numRecords")?.as_u64()
}

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Latest,
    Version(u64),
    /// The version current at this instant.
    Time(chrono::DateTime<chrono::Utc>),
}

/// The Delta table at `url` as a DataFusion provider; None when nothing was published there.
pub async fn open_table(
    engine: &Engine,
    url: &Url,
    at: At,
) -> Result<Option<Arc<dyn TableProvider>>, DeltaTableError> {
    let Some(mut table) = load_table(engine, url).await? else { return Ok(None) };
    match at {
        At::Latest => {}
        At::Version(v) => table.load_version(v).await?,
        At::Time(t) => table.load_with_datetime(t).await?,
    }
    table.update_datafusion_session(&engine.state())?;
    let provider = table.table_provider().await.map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    Ok(Some(provider))
}

/// The latest version of the Delta table at `url`; None when nothing was published there.
pub async fn load_table(engine: &Engine, url: &Url) -> Result<Option<DeltaTable>, DeltaTableError> {
    let mut table =
        DeltaTableBuilder::from_url(url.clone())?.with_storage_options(engine.storage.as_map()).build()?;
    match table.load().await {
        Ok(()) if table.version().is_some() => Ok(Some(table)),
        Ok(()) | Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The useful part of a write error: delta-rs and DataFusion wrap the cause in
/// several layers of prefixes ("Generic DeltaTable error: Arrow error: ...").
pub fn error_text(e: &DeltaTableError) -> String {
    let mut text = e.to_string();
    for prefix in ["Generic DeltaTable error: ", "Arrow error: ", "External error: ", "Execution error: "] {
        while let Some(rest) = text.strip_prefix(prefix) {
            text = rest.to_string();
        }
    }
    text
}
