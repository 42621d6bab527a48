//! One function per subcommand: each runs the chain it needs and prints.

mod init;
mod show;
mod test;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::artifacts;
use crate::cli::{Command, Global, LsOutput, Selection};
use crate::compile::{compile, Compiled};
use crate::error::{Error, Result};
use crate::profile;
use crate::project::{self, Project};
use crate::report::{summary, Reporter};
use crate::run::{self, Status};
use crate::select::{self, NodeFacts};

/// Run a command; returns the process exit code for outcomes that are not errors
/// (0, or 1 when a model failed).
pub async fn dispatch(global: &Global, command: Command) -> Result<i32> {
    match command {
        Command::Init { dir } => init::init(&dir).map(|_| 0),
        Command::Clean => clean(global).map(|_| 0),
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
            Ok(0)
        }
        Command::Run(sel) => run_selection(global, &sel, "run").await,
        Command::Build(sel) => run_selection(global, &sel, "build").await,
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
        Command::Test { selection, junit } => test::test(global, &selection, junit.as_deref(), false).await,
        Command::Freshness { junit } => test::test(global, &Selection::default(), junit.as_deref(), true).await,
        Command::Show { model, limit, format } => show::show(global, &model, limit, format).await.map(|_| 0),
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
    let target = profile::resolve(&p, global.target.as_deref())?;
    let threads = global
        .threads
        .or(target.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    compile(p, target, threads).await
}

pub(crate) fn resolve_selection(c: &Compiled, sel: &Selection) -> Result<BTreeSet<String>> {
    let facts: Vec<NodeFacts<'_>> = c
        .nodes
        .values()
        .map(|n| NodeFacts { name: &n.name, path: &n.path, tags: &n.tags, sources: &n.sources })
        .collect();
    select::resolve(&c.dag, &facts, &sel.select, &sel.exclude)
}

async fn run_selection(global: &Global, sel: &Selection, command: &str) -> Result<i32> {
    let start = Instant::now();
    let c = compile_project(global).await?;
    artifacts::write_compiled(&c)?;
    let chosen = resolve_selection(&c, sel)?;
    if chosen.is_empty() {
        eprintln!("warning: the selection matches nothing; nothing to do");
    }
    let c = Arc::new(c);
    let reporter = Arc::new(Reporter::new(chosen.len(), global.quiet));
    let results = run::run(c.clone(), &chosen, c.threads, reporter.clone()).await;
    reporter.finish();
    let elapsed = start.elapsed().as_secs_f64();
    artifacts::write_run_results(&c, command, elapsed, &results)?;
    let text = summary(&results, elapsed);
    if global.quiet {
        println!("{}", text.lines().last().unwrap_or_default());
    } else {
        println!("{text}");
    }
    Ok(if results.iter().any(|r| r.status != Status::Success) { 1 } else { 0 })
}

fn clean(global: &Global) -> Result<()> {
    let p = load_project(global)?;
    for t in &p.clean_targets {
        let path = p.dir.join(t);
        if !path.starts_with(&p.dir) || path == p.dir {
            return Err(Error::Usage(format!("refusing to clean {}: not inside the project", path.display())));
        }
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
            if !global.quiet {
                println!("removed {}", t.display());
            }
        }
    }
    Ok(())
}
