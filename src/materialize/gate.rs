//! The publish gate: a Delta log store that audits a commit's data files
//! before it lets the commit land.
//!
//! delta-rs writes a table in two steps: data files first (invisible to
//! readers, since no log entry names them), then one log entry that adds them
//! (and, for an overwrite, removes the old ones). This decorator sits on the
//! second step. It reads the entry about to be committed into a
//! [`StagedWrite`] (the files it adds and removes, over the files of the
//! version it starts from), hands it to an [`Audit`], and commits only if the
//! audit passes. A rejected commit leaves the log untouched (the previous
//! version stays current) and its data files are deleted, so a failed table
//! is never half visible and nothing is copied on success.
//!
//! ```text
//!   staged (files written, not visible) --audit--> published (commit lands)
//!                                          `-----> rejected (files deleted)
//! ```

use std::sync::{Arc, OnceLock};

use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore, LogStoreConfig, LogStoreRef};
use deltalake::{DeltaResult, ObjectStore, Path};
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use url::Url;
use uuid::Uuid;

/// A write whose data files exist but that no reader sees yet.
#[derive(Debug, Clone, Default)]
pub struct StagedWrite {
    /// The data files of the version the commit starts from (none for a new table).
    pub current: Vec<Url>,
    /// The files the commit adds.
    pub added: Vec<Url>,
    /// The files the commit removes (every current one, for an overwrite).
    pub removed: Vec<Url>,
}

impl StagedWrite {
    /// The table's data files once the commit lands: current - removed + added.
    /// This is what the audit checks: for an append or a merge, the whole
    /// table as readers will see it, not only the new files.
    pub fn after_commit(&self) -> Vec<Url> {
        let kept = self.current.iter().filter(|f| !self.removed.contains(f));
        kept.chain(&self.added).cloned().collect()
    }

    /// Whether the commit replaces every row (an overwrite): then what was
    /// counted as the rows were written describes the whole table.
    pub fn replaces_all(&self) -> bool {
        self.current.iter().all(|f| self.removed.contains(f))
    }
}

/// An audit that passed: a note for the node's message (its warnings).
#[derive(Debug, Clone, Default)]
pub struct Passed {
    pub note: Option<String>,
}

/// An audit that failed: why the commit does not land.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Rejected {
    pub reason: String,
}

/// Decides whether a staged write may be published.
pub trait Audit: Send + Sync {
    fn audit<'a>(&'a self, staged: &'a StagedWrite) -> BoxFuture<'a, Result<Passed, Rejected>>;
}

/// What the writer and the gate of one write share: the files of the
/// version it starts from (known once the table is loaded, before the
/// write), and the audit's verdict (once it ran).
#[derive(Default)]
pub struct GatedWrite {
    pub current: OnceLock<Vec<Url>>,
    pub verdict: OnceLock<Result<Passed, Rejected>>,
}

pub struct AuditedLogStore {
    inner: LogStoreRef,
    audit: Arc<dyn Audit>,
    write: Arc<GatedWrite>,
}

impl AuditedLogStore {
    /// `inner` with `audit` on its commits, for `write`.
    pub fn wrap(inner: LogStoreRef, audit: Arc<dyn Audit>, write: Arc<GatedWrite>) -> LogStoreRef {
        Arc::new(AuditedLogStore { inner, audit, write })
    }

    /// The data files an uncommitted log entry adds and removes, as paths
    /// relative to the table root.
    async fn actions(&self, entry: &CommitOrBytes) -> Result<(Vec<String>, Vec<String>), TransactionError> {
        let bytes = match entry {
            CommitOrBytes::LogBytes(b) => b.clone(),
            CommitOrBytes::TmpCommit(path) => self.inner.object_store(None).get(path).await?.bytes().await?,
        };
        Ok((paths_of(&bytes, "add"), paths_of(&bytes, "remove")))
    }
}

/// `<action>.path` of every action line (newline-delimited JSON) of a log entry.
fn paths_of(entry: &[u8], action: &str) -> Vec<String> {
    entry
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|a| a.get(action)?.get("path")?.as_str().map(str::to_string))
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
        let (added, removed) = self.actions(&entry).await?;
        let root = self.inner.root_url();
        let url = |p: &String| {
            root.join(p).map_err(|e| rejected(format!("bad data file path {p} in the commit: {e}")))
        };
        let staged = StagedWrite {
            current: self.write.current.get().cloned().unwrap_or_default(),
            added: added.iter().map(url).collect::<Result<_, _>>()?,
            removed: removed.iter().map(url).collect::<Result<_, _>>()?,
        };
        let verdict = self.audit.audit(&staged).await;
        let _ = self.write.verdict.set(verdict.clone());
        if let Err(reason) = verdict {
            let store = self.inner.object_store(None);
            for p in &added {
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
            return Err(rejected(reason.reason));
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
    use super::*;

    #[test]
    fn reads_add_and_remove_actions_of_a_log_entry() {
        let entry = br#"{"commitInfo":{"operation":"WRITE"}}
{"remove":{"path":"old.parquet"}}
{"add":{"path":"part-00001-a.zstd.parquet","size":10}}
{"add":{"path":"part-00002-b.zstd.parquet","size":12}}
"#;
        assert_eq!(paths_of(entry, "add"), ["part-00001-a.zstd.parquet", "part-00002-b.zstd.parquet"]);
        assert_eq!(paths_of(entry, "remove"), ["old.parquet"]);
    }

    #[test]
    fn the_audit_sees_the_table_as_it_will_be() {
        let u = |p: &str| Url::parse(&format!("file:///t/{p}")).unwrap();
        // An append keeps the old files; an overwrite removes them all.
        let append = StagedWrite { current: vec![u("a"), u("b")], added: vec![u("c")], removed: vec![] };
        assert_eq!(append.after_commit(), [u("a"), u("b"), u("c")]);
        assert!(!append.replaces_all());
        let merge = StagedWrite { current: vec![u("a"), u("b")], added: vec![u("c")], removed: vec![u("b")] };
        assert_eq!(merge.after_commit(), [u("a"), u("c")]);
        let overwrite = StagedWrite { current: vec![u("a")], added: vec![u("c")], removed: vec![u("a")] };
        assert_eq!(overwrite.after_commit(), [u("c")]);
        assert!(overwrite.replaces_all());
        assert!(StagedWrite { added: vec![u("c")], ..Default::default() }.replaces_all());
    }
}
