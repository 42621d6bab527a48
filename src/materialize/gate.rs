//! The publish gate: a Delta log store that audits a commit's new data files
//! before it lets the commit land.
//!
//! delta-rs writes a table in two steps: data files first (invisible to
//! readers, since no log entry names them), then one log entry that adds them.
//! This decorator sits on the second step. It reads the `add` actions of the
//! entry about to be committed, hands the files to an [`Audit`], and commits
//! only if the audit passes. A rejected commit leaves the log untouched (the
//! previous version stays current) and its data files are deleted, so a
//! failed table is never half visible and nothing is copied on success.

use std::sync::Arc;

use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake::{DeltaResult, ObjectStore, Path};
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use url::Url;
use uuid::Uuid;

/// Decides whether staged data files may be published.
pub trait Audit: Send + Sync {
    /// `files`: absolute URLs of the Parquet files the commit would add.
    /// `Err(reason)` rejects the commit.
    fn audit(&self, files: Vec<Url>) -> BoxFuture<'_, Result<(), String>>;
}

pub struct AuditedLogStore {
    inner: LogStoreRef,
    audit: Arc<dyn Audit>,
}

impl AuditedLogStore {
    pub fn wrap(inner: LogStoreRef, audit: Arc<dyn Audit>) -> LogStoreRef {
        Arc::new(AuditedLogStore { inner, audit })
    }

    /// The data files an uncommitted log entry adds, as paths relative to the table root.
    async fn added_paths(&self, entry: &CommitOrBytes) -> Result<Vec<String>, TransactionError> {
        let bytes = match entry {
            CommitOrBytes::LogBytes(b) => b.clone(),
            CommitOrBytes::TmpCommit(path) => self.inner.object_store(None).get(path).await?.bytes().await?,
        };
        Ok(added_paths(&bytes))
    }
}

/// `add.path` of every action line (newline-delimited JSON) of a log entry.
fn added_paths(entry: &[u8]) -> Vec<String> {
    entry
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|action| action.get("add")?.get("path")?.as_str().map(str::to_string))
        .collect()
}

fn rejected(msg: String) -> TransactionError {
    TransactionError::LogStoreError { msg: msg.clone(), source: msg.into() }
}

#[async_trait::async_trait]
impl LogStore for AuditedLogStore {
    /// The inner store's name: delta-rs picks the commit protocol by it.
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<bytes::Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        entry: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        let paths = self.added_paths(&entry).await?;
        let root = self.inner.root_url();
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            files.push(
                root.join(p).map_err(|e| rejected(format!("bad data file path {p} in the commit: {e}")))?,
            );
        }
        if let Err(reason) = self.audit.audit(files).await {
            let store = self.inner.object_store(None);
            for p in &paths {
                if let Err(e) =
                    store.delete(&Path::from_url_path(p).unwrap_or_else(|_| Path::from(p.as_str()))).await
                {
                    tracing::warn!("cannot delete unpublished data file {p}: {e}");
                }
            }
            // A rejected first version leaves no table; on local disk, not even its folder.
            if let (0, Ok(folder)) = (version, root.to_file_path()) {
                let _ = std::fs::remove_dir(folder); // only if empty
            }
            return Err(rejected(reason));
        }
        self.inner.write_commit_entry(version, entry, operation_id).await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        entry: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner.abort_commit_entry(version, entry, operation_id).await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }
}

#[cfg(test)]
mod tests {
    use super::added_paths;

    #[test]
    fn reads_add_actions_of_a_log_entry() {
        let entry = br#"{"commitInfo":{"operation":"WRITE"}}
{"remove":{"path":"old.parquet"}}
{"add":{"path":"part-00001-a.zstd.parquet","size":10}}
{"add":{"path":"part-00002-b.zstd.parquet","size":12}}
"#;
        assert_eq!(added_paths(entry), ["part-00001-a.zstd.parquet", "part-00002-b.zstd.parquet"]);
    }
}
