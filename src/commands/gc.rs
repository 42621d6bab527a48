//! `tally gc`: remove what no reader needs any more. For every published
//! table (models, seeds, the scorecard tables), data files that no version
//! within the retention references, including orphans of killed or rejected
//! runs (Delta vacuum, full mode); and the audit folders of runs older than
//! the retention; and the local scratch folders that interrupted builds left
//! behind. Versions older than the retention can no longer be read after it
//! (time travel ends there).

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;

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

async fn collect(
    global: &Global,
    c: &crate::compile::Compiled,
    retain_hours: u64,
    dry_run: bool,
) -> Result<()> {
    let too_long = || Error::Usage(format!("--retain-hours {retain_hours} is too large"));
    let retention =
        i64::try_from(retain_hours).ok().and_then(chrono::Duration::try_hours).ok_or_else(too_long)?;
    let cutoff = chrono::Utc::now().checked_sub_signed(retention).ok_or_else(too_long)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let tables = c
        .nodes
        .values()
        .filter(|n| n.materialized.is_stored())
        .map(|n| n.name.as_str())
        .chain([SCORECARD, HISTORY]);
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
    // A build removes its own scratch folder when it ends; one that was
    // killed cannot. A day's margin keeps a build still running (on another
    // target, in the same project folder) clear of `--retain-hours 0`.
    let scratch = c.project.dir.join(&c.project.target_path).join("scratch");
    let scratch_cutoff = cutoff.min(chrono::Utc::now() - chrono::Duration::days(1));
    let left = expire_scratch(&scratch, scratch_cutoff, dry_run)?;
    if !global.quiet && left > 0 {
        println!("scratch: {verb} the folders of {left} interrupted builds");
    }
    Ok(())
}

/// When run `run_id` started (run ids begin with their UTC start, `20261123T101500Z-...`).
fn run_started(run_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = run_id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(start, "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc())
}

/// Delete `<target-path>/scratch/<run_id>/` of runs started before `cutoff`. Returns how many.
fn expire_scratch(
    scratch: &std::path::Path,
    cutoff: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(scratch) else { return Ok(0) };
    let mut expired = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if run_started(&name).is_some_and(|t| t < cutoff) {
            if !dry_run {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| Error::Usage(format!("cannot delete {}: {e}", entry.path().display())))?;
            }
            expired += 1;
        }
    }
    Ok(expired)
}

/// Delete `<warehouse>/_audit/<run_id>/` of runs started before `cutoff`. Returns how many.
async fn expire_audit_runs(
    c: &crate::compile::Compiled,
    cutoff: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> Result<usize> {
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
        let Some(run_id) = meta
            .location
            .prefix_match(&prefix)
            .and_then(|mut parts| parts.next())
            .map(|p| p.as_ref().to_string())
        else {
            continue;
        };
        if run_started(&run_id).is_some_and(|t| t < cutoff) {
            if !dry_run {
                store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| Error::Usage(format!("cannot delete {}: {e}", meta.location)))?;
            }
            expired.insert(run_id);
        }
    }
    Ok(expired.len())
}
