//! One function per subcommand: each runs the chain it needs and prints.

mod gc;
mod init;
mod show;
mod test;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::artifacts;
use crate::audit::Auditor;
use crate::cli::{Command, Gate, Global, LsOutput, Selection};
use crate::compile::{self, Compiled};
use crate::error::{Error, Result};
use crate::profile;
use crate::project::{self, Project};
use crate::report::{Reporter, summary};
use crate::run::{self, Status};
use crate::select::{self, NodeFacts};

/// Run a command; returns the process exit code for outcomes that are not errors
/// (0, or 1 when a model failed).
pub async fn dispatch(global: &Global, command: Command) -> Result<i32> {
    match command {
        Command::Init { dir } => init::init(&dir).map(|_| 0),
        Command::Clean => clean(global).map(|_| 0),
        Command::Gc { retain_hours, dry_run } => gc::gc(global, retain_hours, dry_run).await.map(|_| 0),
        Command::Compile(sel) => {
            let c = compile_project(global).await?;
            artifacts::write_compiled(&c)?;
            let chosen = resolve_selection(&c, &sel)?;
            if !global.quiet {
                println!(
                    "Compiled {} nodes ({} selected); SQL in {}, manifest in {}",
                    c.nodes.len(),
                    chosen.len(),
                    c.project.target_path.join("compiled").display(),
                    c.project.target_path.join("manifest.json").display()
                );
            }
            // The process ends here: freeing every node's kept plan one by
            // one would only cost time (the OS reclaims the memory at once).
            std::mem::forget(c);
            Ok(0)
        }
        Command::Run { selection, plan: true } => print_plan(global, &selection, None).await,
        Command::Build { selection, gate, plan: true } => print_plan(global, &selection, Some(&gate)).await,
        Command::Run { selection, plan: false } => run_selection(global, &selection, None).await,
        Command::Build { selection, gate, plan: false } => {
            run_selection(global, &selection, Some(&gate)).await
        }
        Command::Ls { selection, output } => {
            let c = compile_project(global).await?;
            let chosen = resolve_selection(&c, &selection)?;
            for name in c.dag.topo_order().filter(|n| chosen.contains(*n)) {
                let node = &c.nodes[name];
                match output {
                    LsOutput::Name => println!("{name}"),
                    LsOutput::Path => println!("{}", node.path.display()),
                    LsOutput::Json => println!(
                        "{}",
                        serde_json::json!({
                            "name": name, "resource_type": node.kind, "path": node.path,
                            "materialized": node.materialized, "tags": node.tags, "depends_on": node.refs,
                        })
                    ),
                }
            }
            Ok(0)
        }
        Command::Test { selection, gate } => test::test(global, &selection, &gate, false).await,
        Command::Freshness { junit } => {
            test::test(global, &Selection::default(), &Gate { junit, warn_error: false }, true).await
        }
        Command::Show { model, limit, format, version, as_of } => {
            let at = show::parse_at(version, as_of.as_deref())?;
            show::show(global, &model, limit, format, at).await.map(|_| 0)
        }
    }
}

pub fn load_project(global: &Global) -> Result<Project> {
    let vars = match &global.vars {
        Some(text) => project::parse_cli_vars(text)?,
        None => Default::default(),
    };
    let p = project::load(&global.project_dir, &vars)?;
    if !global.quiet {
        for w in &p.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(p)
}

pub async fn compile_project(global: &Global) -> Result<Compiled> {
    let p = load_project(global)?;
    let mut target = profile::resolve(&p, global.target.as_deref())?;
    for root in &global.allow_roots {
        let real =
            std::fs::canonicalize(root).map_err(|e| Error::io("--allow-root: cannot open", root, e))?;
        target.allowed_roots.push(real);
    }
    let threads = global
        .threads
        .or(target.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let rendered = compile::render(p, target, threads)?;
    artifacts::write_compiled_sql(&rendered)?;
    compile::plan(rendered).await
}

pub(crate) fn resolve_selection(c: &Compiled, sel: &Selection) -> Result<BTreeSet<String>> {
    let facts: Vec<NodeFacts<'_>> = c
        .nodes
        .values()
        .map(|n| NodeFacts { name: &n.name, path: &n.path, tags: &n.tags, sources: &n.sources })
        .collect();
    select::resolve(&c.dag, &facts, &sel.select, &sel.exclude)
}

/// `--plan`: the build plan of the selection, printed; nothing runs, nothing is written.
async fn print_plan(global: &Global, sel: &Selection, gate: Option<&Gate>) -> Result<i32> {
    let c = compile_project(global).await?;
    let chosen = resolve_selection(&c, sel)?;
    let options =
        crate::build_plan::Options { gate: gate.is_some(), warn_error: gate.is_some_and(|g| g.warn_error) };
    let plan = crate::build_plan::plan(&c, &chosen, options, c.engine.capabilities());
    print!("{}", plan.describe(&c, c.threads));
    Ok(0)
}

/// `tally run` (no `gate`) or `tally build` (write, audit, publish).
async fn run_selection(global: &Global, sel: &Selection, gate: Option<&Gate>) -> Result<i32> {
    let start = Instant::now();
    let c = compile_project(global).await?;
    artifacts::write_compiled(&c)?;
    let chosen = resolve_selection(&c, sel)?;
    if chosen.is_empty() {
        eprintln!("warning: the selection matches nothing; nothing to do");
    }
    let run_id = run_id();
    let lease = take_lease(&c, &run_id, if gate.is_some() { "build" } else { "run" }).await?;
    let outcome = run_leased(global, c, &chosen, gate, &run_id, start).await;
    lease.release().await;
    outcome
}

async fn run_leased(
    global: &Global,
    c: Compiled,
    chosen: &BTreeSet<String>,
    gate: Option<&Gate>,
    run_id: &str,
    start: Instant,
) -> Result<i32> {
    let auditor = match gate {
        Some(g) => {
            let auditor = Auditor::new(&c, run_id, g.warn_error).await;
            auditor.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            Some(Arc::new(auditor))
        }
        None => None,
    };
    let c = Arc::new(c);
    let reporter = Arc::new(Reporter::new(chosen.len(), global.quiet));
    let results = run::run(c.clone(), chosen, c.threads, reporter.clone(), auditor.clone()).await;
    reporter.finish();
    let text = summary(&results, start.elapsed().as_secs_f64());
    if global.quiet {
        println!("{}", text.lines().last().unwrap_or_default());
    } else {
        println!("{text}");
    }
    let failed_checks = match (gate, &auditor) {
        (Some(g), Some(a)) => {
            // Singular tests read published tables: they run once the nodes they read are done.
            let status: std::collections::BTreeMap<&str, Status> =
                results.iter().map(|r| (r.name.as_str(), r.status)).collect();
            let mut runnable = Vec::new();
            for t in c.singular_tests.iter().filter(|t| t.refs.iter().any(|r| chosen.contains(r))) {
                match t.refs.iter().find(|r| status.get(r.as_str()).is_some_and(|s| *s != Status::Success)) {
                    Some(r) => a.record(vec![test::not_ready(
                        t,
                        &format!("did not run: `{r}` was not built in this run"),
                    )]),
                    None => runnable.push(t),
                }
            }
            a.check_singular(&c.engine, &runnable).await;
            test::finish(&c, "build", run_id, a, &results, start, g, global.quiet).await?
        }
        _ => {
            artifacts::write_run_results(
                &c,
                "run",
                run_id,
                start.elapsed().as_secs_f64(),
                &results,
                &[],
                0.0,
            )?;
            false
        }
    };
    Ok(if failed_checks || results.iter().any(|r| r.status != Status::Success) { 1 } else { 0 })
}

/// The target's write lease: one writing run at a time (see `lease`).
pub(crate) async fn take_lease(c: &Compiled, run_id: &str, command: &str) -> Result<crate::lease::Lease> {
    let store = c.engine.registered_store(&c.target.warehouse)?;
    crate::lease::Lease::acquire(store, &c.target.warehouse, run_id, command).await
}

/// Sortable and unique: `20261123T101500Z-1a2b3c`.
pub(crate) fn run_id() -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), &tag[..6])
}

fn clean(global: &Global) -> Result<()> {
    let p = load_project(global)?;
    for t in &p.clean_targets {
        // Checked when the project loaded; checked again here, against the
        // disk as it is now, because this deletes.
        let t = project::paths::strictly_inside(&p.dir, t)
            .map_err(|why| Error::Usage(format!("refusing to clean `{}`: it {why}", t.display())))?;
        let path = p.dir.join(&t);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            if !global.quiet {
                println!("removed {}", t.display());
            }
        }
    }
    Ok(())
}
