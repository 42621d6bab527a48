//! One writing run at a time per target: a lease object at
//! `<warehouse>/_tally/lease.json`, created with a conditional put (create if
//! absent), so of two runs started together exactly one gets it on any store
//! whose conditional put is atomic (local disk, S3). The lease names its owner
//! and expires: the holder renews it while it runs, and a crashed run's lease
//! can be taken over once expired.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// How long a lease lasts without renewal; the holder renews it every third of that.
pub const TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    run_id: String,
    host: String,
    pid: u32,
    command: String,
    acquired_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Holder {
    /// A run on this very host whose process is gone (killed, crashed): its
    /// lease need not be waited out.
    fn died_here(&self) -> bool {
        self.host == hostname()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A held lease; dropping it stops renewal, [`Lease::release`] removes it.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    renewal: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Take the lease of the warehouse at `warehouse`, or fail saying who holds it.
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        warehouse: &Url,
        run_id: &str,
        command: &str,
    ) -> Result<Lease> {
        let path = Path::from_url_path(format!("{}_tally/lease.json", warehouse.path()))
            .map_err(|e| Error::Usage(format!("{warehouse}: {e}")))?;
        let holder = Holder {
            run_id: run_id.to_string(),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            acquired_at: Utc::now(),
            expires_at: Utc::now() + TTL,
        };
        if !create(&store, &path, &holder).await? {
            let (current, version) = read(&store, &path).await?;
            let expired = current.as_ref().is_none_or(|h| h.expires_at < Utc::now() || h.died_here());
            if !expired || !take_over(&store, &path, &holder, version).await? {
                let who = current.map_or("another run".to_string(), |h| {
                    format!(
                        "`tally {}` run {} (pid {} on {}) since {}; its lease expires at {} unless renewed",
                        h.command,
                        h.run_id,
                        h.pid,
                        h.host,
                        h.acquired_at.format("%F %T UTC"),
                        h.expires_at.format("%F %T UTC")
                    )
                });
                return Err(Error::Busy(format!(
                    "the warehouse {warehouse} is being written by {who}. Run again when it has finished; a crashed run's lease is taken over at once on its own host, elsewhere {} s after its last renewal",
                    TTL.as_secs()
                )));
            }
        }
        let renewal = tokio::spawn(renew(store.clone(), path.clone(), holder));
        Ok(Lease { store, path, renewal })
    }

    /// Give the lease back.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.store.delete(&self.path).await {
            tracing::warn!("cannot release the lease {}: {e}", self.path);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Create the lease if absent; false when it exists.
async fn create(store: &Arc<dyn ObjectStore>, path: &Path, holder: &Holder) -> Result<bool> {
    let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
    match store.put_opts(path, payload(holder)?, opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(Error::Usage(format!("cannot create the lease {path}: {e}"))),
    }
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<(Option<Holder>, UpdateVersion)> {
    let got =
        store.get(path).await.map_err(|e| Error::Usage(format!("cannot read the lease {path}: {e}")))?;
    let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
    let bytes = got.bytes().await.map_err(|e| Error::Usage(format!("cannot read the lease {path}: {e}")))?;
    Ok((serde_json::from_slice(&bytes).ok(), version))
}

/// Replace an expired lease: a conditional update where the store has one
/// (S3, memory); local disk has none, so there the expired file is removed
/// and created anew, which another taker can race only within that instant.
async fn take_over(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    holder: &Holder,
    seen: UpdateVersion,
) -> Result<bool> {
    let opts = PutOptions { mode: PutMode::Update(seen), ..Default::default() };
    match store.put_opts(path, payload(holder)?, opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. }) => {
            store
                .delete(path)
                .await
                .map_err(|e| Error::Usage(format!("cannot remove the expired lease {path}: {e}")))?;
            create(store, path, holder).await
        }
        Err(e) => Err(Error::Usage(format!("cannot take over the expired lease {path}: {e}"))),
    }
}

/// Push the expiry forward every third of the TTL while the run lasts.
async fn renew(store: Arc<dyn ObjectStore>, path: Path, mut holder: Holder) {
    loop {
        tokio::time::sleep(TTL / 3).await;
        holder.expires_at = Utc::now() + TTL;
        let Ok(p) = payload(&holder) else { return };
        if let Err(e) = store.put(&path, p).await {
            tracing::warn!("cannot renew the lease {path}: {e}");
        }
    }
}

fn payload(holder: &Holder) -> Result<PutPayload> {
    serde_json::to_vec_pretty(holder)
        .map(PutPayload::from)
        .map_err(|e| Error::Usage(format!("cannot write the lease: {e}")))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let wh = Url::parse("memory:///wh/").unwrap();
        let first = Lease::acquire(store.clone(), &wh, "r1", "build").await.unwrap();
        let err = Lease::acquire(store.clone(), &wh, "r2", "build").await.err().unwrap().to_string();
        assert!(err.contains("run r1") && err.contains(&format!("pid {}", std::process::id())), "{err}");
        first.release().await;
        let second = Lease::acquire(store.clone(), &wh, "r3", "build").await.unwrap();
        // A crashed holder: its lease is past expiry.
        second.renewal.abort();
        let path = Path::from("wh/_tally/lease.json");
        let (h, _) = read(&store, &path).await.unwrap();
        let mut h = h.unwrap();
        h.expires_at = Utc::now() - chrono::Duration::seconds(1);
        store.put(&path, payload(&h).unwrap()).await.unwrap();
        let third = Lease::acquire(store.clone(), &wh, "r4", "build").await.unwrap();
        assert_eq!(read(&store, &path).await.unwrap().0.unwrap().run_id, "r4");
        third.release().await;
    }
}
