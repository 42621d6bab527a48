//! `tally gc`: remove what no reader needs any more. For every published
//! table (models, seeds, the scorecard tables), data files that no version
//! within the retention references, including orphans of killed or rejected
//! runs (Delta vacuum, full mode); and the audit folders of runs older than
//! the retention. Versions older than the retention can no longer be read
//! after it (time travel ends there).

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStoreExt;

use super::compile_project;
use crate::cli::Global;
use crate::error::{Error, Result};
use crate::scorecard::{HISTORY, SCORECARD};

pub async fn gc(global: &Global, retain_hours: u64, dry_run: bool) -> Result<()> {
    let c = compile_project(global).await?;
    let lease = super::take_lease(&c, &super::run_id(), "gc").await?;
    let outcome = collect(global, &c, retain_hours, dry_run).await;
    lease.release().await;
    outcome
}

async fn collect(global: &Global, c: &crate::compile::Compiled, retain_hours: u64, dry_run: bool) -> Result<()> {
    let too_long = || Error::Usage(format!("--retain-hours {retain_hours} is too large"));
    let retention = i64::try_from(retain_hours).ok().and_then(chrono::Duration::try_hours).ok_or_else(too_long)?;
    let cutoff = chrono::Utc::now().checked_sub_signed(retention).ok_or_else(too_long)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let tables = c.nodes.values().filter(|n| n.materialized.is_stored()).map(|n| n.name.as_str()).chain([SCORECARD, HISTORY]);
    for name in tables {
        let url = c.target.table_url(name);
        let Some(table) = crate::materialize::load_table(&c.engine, &url).await? else { continue };
        let (_, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .with_dry_run(dry_run)
            .await?;
        if !global.quiet && !metrics.files_deleted.is_empty() {
            println!("{name}: {verb} {} data files", metrics.files_deleted.len());
        }
    }
    let runs = expire_audit_runs(c, cutoff, dry_run).await?;
    if !global.quiet {
        println!("_audit: {verb} the failing rows of {runs} runs older than {retain_hours} h");
    }
    Ok(())
}

/// Delete `<warehouse>/_audit/<run_id>/` of runs started before `cutoff`
/// (run ids begin with their UTC start, `20261123T101500Z-...`). Returns how many.
async fn expire_audit_runs(c: &crate::compile::Compiled, cutoff: chrono::DateTime<chrono::Utc>, dry_run: bool) -> Result<usize> {
    let dir = c.target.table_url("_audit");
    let store = c.engine.registered_store(&dir)?;
    let prefix = StorePath::from_url_path(dir.path()).map_err(|e| Error::Usage(format!("{dir}: {e}")))?;
    let objects: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(o) => o,
        Err(object_store::Error::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(Error::Usage(format!("cannot list {dir}: {e}"))),
    };
    let mut expired = std::collections::BTreeSet::new();
    for meta in objects {
        let Some(run_id) = meta.location.prefix_match(&prefix).and_then(|mut parts| parts.next()).map(|p| p.as_ref().to_string()) else { continue };
        let started = run_id.split('-').next().and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok());
        if started.is_some_and(|t| t.and_utc() < cutoff) {
            if !dry_run {
                store.delete(&meta.location).await.map_err(|e| Error::Usage(format!("cannot delete {}: {e}", meta.location)))?;
            }
            expired.insert(run_id);
        }
    }
    Ok(expired.len())
}
