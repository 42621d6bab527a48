//! Files written under `target/`: compiled SQL, `manifest.json`, `run_results.json`.
//! Keys are sorted (BTreeMap) so artifacts diff cleanly between runs.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::compile::{Compiled, NodeKind, Rendered};
use crate::error::{Error, Result};
use crate::run::NodeResult;

#[derive(Serialize)]
struct Manifest<'a> {
    metadata: Metadata<'a>,
    nodes: BTreeMap<String, ManifestNode<'a>>,
    sources: BTreeMap<String, ManifestSource>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    tally_version: &'static str,
    project_name: &'a str,
    target: &'a str,
    generated_at: String,
}

fn metadata(c: &Compiled) -> Metadata<'_> {
    Metadata {
        tally_version: env!("CARGO_PKG_VERSION"),
        project_name: &c.project.name,
        target: &c.target.name,
        generated_at: c.run_started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }
}

#[derive(Serialize)]
struct ManifestNode<'a> {
    name: &'a str,
    resource_type: NodeKind,
    path: String,
    compiled_path: Option<String>,
    materialized: &'a str,
    depends_on: DependsOn,
    config: &'a crate::project::ConfigLayer,
    tags: Vec<&'a str>,
    description: Option<&'a str>,
    columns: Vec<ManifestColumn>,
    checksum: Checksum<'a>,
    relation: Option<String>,
}

#[derive(Serialize)]
struct DependsOn {
    nodes: Vec<String>,
}

#[derive(Serialize)]
struct ManifestColumn {
    name: String,
    data_type: String,
    nullable: bool,
    description: Option<String>,
}

#[derive(Serialize)]
struct Checksum<'a> {
    name: &'static str,
    checksum: &'a str,
}

#[derive(Serialize)]
struct ManifestSource {
    location: String,
    columns: Vec<ManifestColumn>,
}

fn columns(
    schema: &datafusion::arrow::datatypes::Schema,
    declared: &[crate::project::Column],
) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
            description: declared.iter().find(|c| &c.name == f.name()).and_then(|c| c.description.clone()),
        })
        .collect()
}

/// Write `target/compiled/<path>.sql` for every model and `target/manifest.json`.
pub fn write_compiled(c: &Compiled) -> Result<()> {
    let target = c.project.dir.join(&c.project.target_path);
    let mut nodes = BTreeMap::new();
    for node in c.nodes.values() {
        let compiled_path = (node.kind == NodeKind::Model).then(|| c.compiled_path(node));
        let mut deps: Vec<String> = node.refs.iter().map(|r| c.nodes[r].unique_id()).collect();
        deps.extend(node.sources.iter().map(|(s, t)| format!("source.{s}.{t}")));
        nodes.insert(
            node.unique_id(),
            ManifestNode {
                name: &node.name,
                resource_type: node.kind,
                path: node.path.display().to_string(),
                compiled_path: compiled_path.map(|p| p.display().to_string()),
                materialized: node.materialized.as_str(),
                depends_on: DependsOn { nodes: deps },
                config: &node.config,
                tags: node.tags.iter().map(String::as_str).collect(),
                description: node.description.as_deref(),
                columns: node.schema.as_ref().map(|s| columns(s, &node.columns)).unwrap_or_default(),
                checksum: Checksum { name: "sha256", checksum: &node.checksum },
                relation: node.materialized.is_stored().then(|| c.target.table_url(&node.name).to_string()),
            },
        );
    }
    let sources = c
        .sources
        .iter()
        .map(|((s, t), (location, schema))| {
            let declared = &c.project.sources[&(s.clone(), t.clone())].columns;
            (
                format!("source.{s}.{t}"),
                ManifestSource { location: location.clone(), columns: columns(schema, declared) },
            )
        })
        .collect();
    let manifest = Manifest { metadata: metadata(c), nodes, sources };
    // One file per check, as dbt writes them (30,000 in a 10,000-model
    // project): written on all cores, beside the manifest.
    let queries = crate::audit::one_queries(c);
    let file = |s: &str| s.replace(['/', '\\'], "_");
    let dir = target.join("compiled").join("assertions");
    let files: Vec<(String, &String)> = queries
        .iter()
        .map(|(relation, name, sql)| (format!("{}/{}.sql", file(relation), file(name)), sql))
        .collect();
    let (manifest, checks) = rayon::join(
        || write_json(&target.join("manifest.json"), &manifest),
        || files.par_iter().try_for_each(|(path, sql)| write(&dir.join(path), format!("{sql}\n").as_bytes())),
    );
    manifest.and(checks)?;
    prune(&dir, &files.iter().map(|(path, _)| path.as_str()).collect::<Vec<_>>())
}

/// Remove the query files of checks removed or renamed since the last
/// compile (the DuckDB benchmark, for one, runs every file under `dir`), and
/// the folders they leave empty. The files written are listed beside `dir`,
/// in `<dir>.list`: comparing with the last list costs one read, where
/// walking 10,000 folders cost a tenth of a 10,000-model compile. Only files
/// a compile wrote are removed, never others put there.
fn prune(dir: &Path, written: &[&str]) -> Result<()> {
    let list = dir.with_extension("list");
    let last = std::fs::read_to_string(&list).unwrap_or_default();
    let kept: HashSet<&str> = written.iter().copied().collect();
    for path in last.lines().filter(|l| !kept.contains(l) && is_plain_relative(l)).map(|l| dir.join(l)) {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("cannot remove the stale check query {}: {e}", path.display())
            }
            _ => {}
        }
        if let Some(parent) = path.parent().filter(|p| *p != dir) {
            // Fails, harmlessly, unless the folder is now empty.
            let _ = std::fs::remove_dir(parent);
        }
    }
    write(&list, format!("{}\n", written.join("\n")).as_bytes())
}

/// Whether a line of the list names a path inside its folder.
fn is_plain_relative(line: &str) -> bool {
    !line.is_empty() && Path::new(line).components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

#[derive(Serialize)]
struct RunResults<'a> {
    metadata: Metadata<'a>,
    command: &'a str,
    run_id: &'a str,
    elapsed_time: f64,
    /// Seconds spent in checks, summed over models checked at once.
    assertion_seconds: f64,
    peak_rss_bytes: Option<u64>,
    /// One entry per node run (empty for `tally test`).
    results: &'a [NodeResult],
    /// One entry per assertion evaluated (empty for `tally run`).
    assertions: &'a [crate::assertions::Outcome],
}

/// `target/run_results.json`: every node's and every assertion's result.
pub fn write_run_results(
    c: &Compiled,
    command: &str,
    run_id: &str,
    elapsed: f64,
    results: &[NodeResult],
    assertions: &[crate::assertions::Outcome],
    assertion_seconds: f64,
) -> Result<()> {
    let doc = RunResults {
        metadata: metadata(c),
        command,
        run_id,
        elapsed_time: elapsed,
        assertion_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        results,
        assertions,
    };
    write_json(&c.project.dir.join(&c.project.target_path).join("run_results.json"), &doc)
}

/// Peak resident memory of this process (Linux `VmHWM`), for benchmarks and tests.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Write one model's rendered SQL to `target/compiled/<path>` (done right after
/// rendering, so a planning error can point the user at it).
/// Every model's rendered SQL under `target/compiled/`, before planning, so
/// that an error from the planner can point at the SQL it read.
pub fn write_compiled_sql(r: &Rendered) -> Result<()> {
    let dir = r.project.dir.join(&r.project.target_path).join("compiled");
    r.nodes
        .par_iter()
        .filter(|(_, n)| n.kind == NodeKind::Model)
        .try_for_each(|(_, node)| write(&dir.join(&node.path), node.sql.as_bytes()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot serialize {}: {e}", path.display())))?;
    write(path, &text)
}

/// Write `bytes` unless the file already holds exactly them: rewriting an
/// unchanged file truncates it first, and on ext4 a truncate-then-write flushes
/// to disk on close, which made writing 2,000 compiled models cost more than
/// planning them.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::io("cannot write", path, e))
}
