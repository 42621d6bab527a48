//! load -> render -> resolve DAG -> plan: everything `compile`, `run`, `ls` and
//! `show` share. After [`compile`], every node's output schema is known and no
//! data has been read (only source Parquet footers and seed CSV headers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use rayon::prelude::*;
use tracing::info_span;

use crate::assertions::{CheckSet, Kind, UPSTREAM_LOADED_AT};
use crate::dag::Dag;
use crate::diagnostic::Diagnostic;
use crate::error::{Error, Result};
use crate::plan::{Engine, parse_type, plan_sql_in, sql_diagnostic};
use crate::profile::{Target, location_url};
use crate::project::{Column, ConfigLayer, Materialization, Project, TestDecl, merge_config, tags_of};
use crate::render::{Renderer, TargetInfo, quote_ident};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Model,
    Seed,
}

#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub path: PathBuf,
    pub materialized: Materialization,
    /// Final config: folder < properties < the model's own `config()`.
    pub config: ConfigLayer,
    pub tags: BTreeSet<String>,
    /// The file as written (Jinja SQL or CSV text is not kept for seeds).
    pub source_text: String,
    /// Rendered SQL (empty for seeds).
    pub sql: String,
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub checksum: String,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    /// Output schema, from the plan.
    pub schema: Option<SchemaRef>,
    /// The plan it was typed by (against its parents' schemas), kept for
    /// what reads plans without running them: column lineage, `--plan`.
    pub plan: Option<LogicalPlan>,
}

impl Node {
    pub fn unique_id(&self) -> String {
        let kind = match self.kind {
            NodeKind::Model => "model",
            NodeKind::Seed => "seed",
        };
        format!("{kind}.{}", self.name)
    }
}

/// A rendered singular test (a SQL file under `tests/`).
#[derive(Debug)]
pub struct SingularTest {
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    /// `{{ config(severity='warn') }}`; error otherwise.
    pub warn: bool,
}

pub struct Compiled {
    pub project: Project,
    pub target: Target,
    pub nodes: BTreeMap<String, Node>,
    pub dag: Dag,
    pub engine: Engine,
    /// Source tables as registered: (source, table) -> (location URL, schema).
    pub sources: BTreeMap<(String, String), (String, SchemaRef)>,
    /// Every relation's checks (a model or seed by name, a source as
    /// `source.table`), parsed once; relations with none are absent.
    pub checks: BTreeMap<String, CheckSet>,
    pub run_started_at: DateTime<Utc>,
    pub threads: usize,
    pub singular_tests: Vec<SingularTest>,
}

static NO_CHECKS: CheckSet = CheckSet::EMPTY;

impl Compiled {
    pub fn compiled_path(&self, node: &Node) -> PathBuf {
        self.project.target_path.join("compiled").join(&node.path)
    }

    /// The checks of `relation` (empty when it declares none).
    pub fn checks_of(&self, relation: &str) -> &CheckSet {
        self.checks.get(relation).unwrap_or(&NO_CHECKS)
    }
}

/// The first half of compiling: every model and singular test rendered,
/// nothing planned or read yet. The commands write its SQL under
/// `target/compiled/` before [`plan`] (so a model that does not plan can be
/// read as it was compiled).
pub struct Rendered {
    pub project: Project,
    pub target: Target,
    pub threads: usize,
    pub run_started_at: DateTime<Utc>,
    pub nodes: BTreeMap<String, Node>,
    pub singular_tests: Vec<SingularTest>,
    renderer: Renderer,
}

/// [`render`], then [`plan`]: for callers that write no compiled SQL.
pub async fn compile(project: Project, target: Target, threads: usize) -> Result<Compiled> {
    plan(render(project, target, threads)?).await
}

/// Render every model, seed and singular test (in parallel: models are
/// independent), collecting every error rather than the first.
pub fn render(project: Project, target: Target, threads: usize) -> Result<Rendered> {
    let _span = info_span!("render", project = %project.name).entered();
    let run_started_at = Utc::now();
    let info = TargetInfo {
        name: target.name.clone(),
        profile_name: target.profile_name.clone(),
        engine: target.engine.clone(),
        threads,
        warehouse: target.warehouse.to_string(),
    };
    let started_text = run_started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let renderer = Renderer::new(&project, &info, &started_text).map_err(Error::Project)?;
    let mut errors = Vec::new();
    let mut nodes = BTreeMap::new();
    for node in project.models.par_iter().map(|(_, model)| model_node(&renderer, model)).collect::<Vec<_>>() {
        match node {
            Ok(node) => {
                nodes.insert(node.name.clone(), node);
            }
            Err(d) => errors.push(d),
        }
    }
    nodes.extend(project.seeds.values().map(|seed| (seed.name.clone(), seed_node(seed))));
    let singular_tests = render_singular_tests(&renderer, &project, &nodes, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Project(errors));
    }
    Ok(Rendered { project, target, threads, run_started_at, nodes, singular_tests, renderer })
}

/// Type every node in DAG order against its parents' schemas (sources read
/// only through their Parquet footers), and parse and validate every check.
pub async fn plan(rendered: Rendered) -> Result<Compiled> {
    let Rendered { project, target, threads, run_started_at, mut nodes, singular_tests, renderer } = rendered;
    let _span = info_span!("plan", project = %project.name).entered();
    let dag = dag_of(&nodes)?;
    let engine = Engine::with_storage(threads, target.storage.clone());
    engine.register_store(&target.warehouse).map_err(|e| {
        Diagnostic::error(format!(
            "target `{}`: cannot reach the warehouse {}: {e}",
            target.name, target.warehouse
        ))
        .in_file(crate::profile::PROFILES_FILE)
    })?;
    let used_sources: BTreeSet<(String, String)> = nodes
        .values()
        .flat_map(|n| n.sources.iter().cloned())
        .chain(singular_tests.iter().flat_map(|t| t.sources.iter().cloned()))
        .collect();
    let mut errors = Vec::new();
    let mut sources = BTreeMap::new();
    for key in used_sources {
        match register_source(&project, &renderer, &engine, &target.allowed_roots, &key).await {
            Ok(v) => {
                sources.insert(key, v);
            }
            Err(d) => errors.push(d),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Project(errors));
    }
    errors.extend(plan_nodes(&project, &engine, &dag, &mut nodes, threads).await);
    let checks = parse_checks(&project, &engine, &dag, &nodes, &sources, &mut errors).await;
    if !errors.is_empty() {
        return Err(Error::Project(errors));
    }
    Ok(Compiled {
        project,
        target,
        nodes,
        dag,
        engine,
        sources,
        checks,
        run_started_at,
        threads,
        singular_tests,
    })
}

fn seed_node(seed: &crate::project::Seed) -> Node {
    Node {
        name: seed.name.clone(),
        kind: NodeKind::Seed,
        path: seed.path.clone(),
        materialized: Materialization::Seed,
        tags: seed.config.get("tags").map(tags_of).unwrap_or_default(),
        config: seed.config.clone(),
        source_text: String::new(),
        sql: String::new(),
        refs: Vec::new(),
        sources: Vec::new(),
        checksum: seed.checksum.clone(),
        description: seed.description.clone(),
        columns: seed.columns.clone(),
        schema: None,
        plan: None,
    }
}

/// Render the SQL files under `tests/`; a `ref` to no node is an error.
fn render_singular_tests(
    renderer: &Renderer,
    project: &Project,
    nodes: &BTreeMap<String, Node>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<SingularTest> {
    let mut out = Vec::new();
    for t in &project.singular_tests {
        let r = match renderer.render(&t.path, &t.sql, &t.name) {
            Ok(r) => r,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        for missing in r.refs.iter().filter(|n| !nodes.contains_key(*n)) {
            let mut d = Diagnostic::error(format!("`ref('{missing}')`: no model or seed has that name")).at(
                &t.path,
                ref_position(&t.sql, missing).map_or(0, |p| p.0),
                0,
            );
            if let Some(h) = crate::diagnostic::did_you_mean(missing, nodes.keys().map(String::as_str)) {
                d = d.with_help(h);
            }
            errors.push(d);
        }
        let warn =
            r.config.get("severity").and_then(|v| v.as_str()).is_some_and(|s| s.eq_ignore_ascii_case("warn"));
        out.push(SingularTest {
            name: t.name.clone(),
            path: t.path.clone(),
            sql: r.sql,
            refs: r.refs,
            sources: r.sources,
            warn,
        });
    }
    out
}

/// The DAG of `ref`s; a cycle is an error at the first `ref` on it.
fn dag_of(nodes: &BTreeMap<String, Node>) -> Result<Dag, Diagnostic> {
    let deps: BTreeMap<String, Vec<String>> =
        nodes.iter().map(|(n, node)| (n.clone(), node.refs.clone())).collect();
    Dag::build(&deps).map_err(|cycle| {
        let d = Diagnostic::error(format!("dependency cycle: {cycle}"))
            .with_help("each arrow is a ref() to the next model; remove one of them to break the cycle");
        match cycle.0.first().and_then(|n| nodes.get(n)) {
            Some(first) => {
                let next = cycle.0.get(1).cloned().unwrap_or_default();
                let (line, col) = ref_position(&first.source_text, &next).unwrap_or((0, 0));
                d.at(&first.path, line, col)
            }
            None => d,
        }
    })
}

/// Plan every node level by level; a node whose parent failed is not
/// planned (its parent's error is the one to fix).
async fn plan_nodes(
    project: &Project,
    engine: &Engine,
    dag: &Dag,
    nodes: &mut BTreeMap<String, Node>,
    threads: usize,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for level in dag.levels() {
        let (todo, blocked): (Vec<&str>, Vec<&str>) =
            level.into_iter().partition(|n| !dag.parents(n).iter().any(|p| failed.contains(*p)));
        failed.extend(blocked.into_iter().map(str::to_string));
        let todo: Vec<&Node> = todo.iter().map(|n| &nodes[*n]).collect();
        for (name, planned) in plan_level(project, engine, &todo, threads).await {
            match planned {
                Ok(plan) => {
                    if let Some(node) = nodes.get_mut(&name) {
                        node.schema = Some(plan.schema().inner().clone());
                        node.plan = Some(plan);
                    }
                }
                Err(d) => {
                    errors.push(d);
                    failed.insert(name);
                }
            }
        }
    }
    errors
}

/// Every declared test parsed once and checked against the schemas now known
/// (see [`crate::assertions::validate`]), in node then source order. A model's
/// freshness with no `column:` reads its upstream sources' loads.
async fn parse_checks(
    project: &Project,
    engine: &Engine,
    dag: &Dag,
    nodes: &BTreeMap<String, Node>,
    sources: &BTreeMap<(String, String), (String, SchemaRef)>,
    errors: &mut Vec<Diagnostic>,
) -> BTreeMap<String, CheckSet> {
    let lookup = |name: &str| -> Option<Option<SchemaRef>> {
        if let Some(n) = nodes.get(name) {
            return Some(n.schema.clone());
        }
        let (s, t) = name.split_once('.')?;
        let key = (s.to_string(), t.to_string());
        project.sources.contains_key(&key).then(|| sources.get(&key).map(|(_, schema)| schema.clone()))
    };
    let state = engine.state();
    let mut relations: Vec<(String, Option<SchemaRef>, &[crate::project::TestDecl], bool)> =
        nodes.values().map(|n| (n.name.clone(), n.schema.clone(), project.tests_of(&n.name), true)).collect();
    relations.extend(project.sources.iter().map(|(key, t)| {
        let name = format!("{}.{}", key.0, key.1);
        (name, sources.get(key).map(|(_, schema)| schema.clone()), t.tests.as_slice(), false)
    }));
    let mut sets = BTreeMap::new();
    for (name, schema, decls, is_node) in relations {
        let relation_sql = crate::assertions::relation_sql(&name);
        let mut checks = Vec::new();
        for decl in decls {
            let mut a = match crate::assertions::parse(&name, &relation_sql, decl) {
                Ok(a) => a,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            };
            let found =
                crate::assertions::validate(&state, &a, decl.name(), schema.as_deref(), &lookup).await;
            if !found.is_empty() {
                errors.extend(found);
                continue;
            }
            if let Kind::Freshness(f) = &mut a.kind
                && f.column.is_empty()
            {
                let loads =
                    if is_node { upstream_loads(project, dag, nodes, &name, &f.upstream) } else { None };
                let Some(loads) = loads else {
                    errors.push(
                        Diagnostic::error(format!(
                            "`freshness` on `{name}` needs `column:`, or upstream sources with a `loaded_at_field`"
                        ))
                        .at(&decl.file, decl.line, 0),
                    );
                    continue;
                };
                f.column = UPSTREAM_LOADED_AT.to_string();
                a.relation_sql = loads;
            }
            checks.push(a);
        }
        if !checks.is_empty() {
            sets.insert(name, CheckSet::new(checks));
        }
    }
    sets
}

/// `select max(<loaded_at_field>) as newest from <source>`, unioned over
/// `sources` that declare a loaded_at_field ("" when none does).
pub fn loads_sql<'a>(project: &Project, sources: impl Iterator<Item = &'a (String, String)>) -> String {
    let parts: Vec<String> = sources
        .filter_map(|key| {
            let field = project.sources.get(key)?.loaded_at_field.as_ref()?;
            Some(format!(
                "select max({}) as newest from {}",
                quote_ident(field),
                crate::assertions::relation_sql(&format!("{}.{}", key.0, key.1))
            ))
        })
        .collect();
    parts.join(" union all ")
}

/// A model's upstream loads, as a one-row relation: the oldest of the newest
/// loads of the sources it reads (directly or through its ancestors), so its
/// freshness is that of its stalest input. Only the sources in `named` count,
/// or, when none are named, those with a freshness check of their own (a
/// monthly table without one would otherwise always look stale). None when no
/// such source declares a `loaded_at_field`.
fn upstream_loads(
    project: &Project,
    dag: &Dag,
    nodes: &BTreeMap<String, Node>,
    model: &str,
    named: &[String],
) -> Option<String> {
    let mut upstream = dag.ancestors(model);
    upstream.insert(model.to_string());
    let sources: BTreeSet<&(String, String)> = upstream
        .iter()
        .filter_map(|n| nodes.get(n))
        .flat_map(|n| &n.sources)
        .filter(|key| {
            let name = format!("{}.{}", key.0, key.1);
            if named.is_empty() {
                project.sources.get(*key).is_some_and(|s| s.tests.iter().any(TestDecl::is_freshness))
            } else {
                named.contains(&name)
            }
        })
        .collect();
    let loads = loads_sql(project, sources.into_iter());
    (!loads.is_empty())
        .then(|| format!("(select min(newest) as {UPSTREAM_LOADED_AT} from ({loads}) n) upstream"))
}

/// Render one model into a node (its SQL, refs and final config).
fn model_node(renderer: &Renderer, model: &crate::project::Model) -> Result<Node, Diagnostic> {
    let r = renderer.render(&model.path, &model.sql, &model.name)?;
    let config = merge_config([model.config.clone(), r.config]);
    Ok(Node {
        name: model.name.clone(),
        kind: NodeKind::Model,
        path: model.path.clone(),
        materialized: materialization(&config, &model.path, &model.sql)?,
        tags: config.get("tags").map(tags_of).unwrap_or_default(),
        config,
        source_text: model.sql.clone(),
        sql: r.sql,
        refs: r.refs,
        sources: r.sources,
        checksum: model.checksum.clone(),
        description: model.description.clone(),
        columns: model.columns.clone(),
        schema: None,
        plan: None,
    })
}

/// Plan one DAG level's nodes (none depends on another), on up to `threads`
/// threads: planning is CPU-bound (SQL to plan, type coercion), and a wide
/// project has hundreds of nodes per level.
async fn plan_level(
    project: &Project,
    engine: &Engine,
    nodes: &[&Node],
    threads: usize,
) -> Vec<(String, Result<LogicalPlan, Diagnostic>)> {
    let workers = threads.min(nodes.len() / 8).max(1);
    if workers == 1 {
        let state = engine.state();
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            out.push((node.name.clone(), plan_node(project, engine, &state, node).await));
        }
        return out;
    }
    // Compile runs alone on the runtime: blocking this worker while scoped
    // threads plan is harmless, and they re-enter the runtime through its
    // handle (seeds read CSV headers through object_store). Each worker takes
    // the next unplanned node, so a slow model or a busy core does not leave
    // the other workers idle at the end of the level.
    let handle = tokio::runtime::Handle::current();
    let next = AtomicUsize::new(0);
    let mut planned: Vec<Option<Result<LogicalPlan, Diagnostic>>> = nodes.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let state = engine.state();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(node) = nodes.get(i) else { break };
                        out.push((i, handle.block_on(plan_node(project, engine, &state, node))));
                    }
                    out
                })
            })
            .collect();
        for task in tasks {
            // A worker that panicked loses its results; its nodes are reported below.
            for (i, result) in task.join().unwrap_or_default() {
                planned[i] = Some(result);
            }
        }
    });
    let crashed = |node: &Node| {
        Err(Diagnostic::error("internal error: planning this model crashed; please report it")
            .in_file(&node.path))
    };
    nodes
        .iter()
        .zip(planned)
        .map(|(node, result)| (node.name.clone(), result.unwrap_or_else(|| crashed(node))))
        .collect()
}

/// Type-check a node against its parents' schemas and register its own.
async fn plan_node(
    project: &Project,
    engine: &Engine,
    state: &SessionState,
    node: &Node,
) -> Result<LogicalPlan, Diagnostic> {
    let plan = match node.materialized {
        Materialization::Seed => seed_plan(project, engine, node).await?,
        _ => plan_sql_in(state, &node.sql).await.map_err(|e| {
            let compiled = project.target_path.join("compiled").join(&node.path);
            sql_diagnostic(&node.path, &node.source_text, &node.sql, &e, &compiled.display().to_string())
        })?,
    };
    // Dependents are type-checked against this node's schema alone, views
    // included: inlining each view's ancestry into every dependent would make
    // compiling a deep project quadratic (exponential with fan-ins). `run`
    // registers each view with its plan before its dependents run.
    engine
        .register_placeholder(&node.name, plan.schema().inner().clone())
        .map_err(|e| Diagnostic::error(e.to_string()).in_file(&node.path))?;
    Ok(plan)
}

/// The seed's CSV read plan, with `column_types` applied.
pub async fn seed_plan(
    project: &Project,
    engine: &Engine,
    node: &Node,
) -> Result<datafusion::logical_expr::LogicalPlan, Diagnostic> {
    let mut overrides = Vec::new();
    if let Some(serde_json::Value::Object(types)) = node.config.get("column_types") {
        for (col, t) in types {
            let t = t.as_str().unwrap_or_default();
            let dt = parse_type(t).ok_or_else(|| {
                // Blame the YAML that declares the type, not the CSV.
                let d = unknown_type(&node.path, col, t);
                match project.seeds.get(&node.name).and_then(|s| s.config_at.clone()) {
                    Some((file, line)) => d.at(file, line, 0),
                    None => d,
                }
            })?;
            overrides.push((col.clone(), dt));
        }
    }
    let delimiter =
        node.config.get("delimiter").and_then(|d| d.as_str()).and_then(|d| d.bytes().next()).unwrap_or(b',');
    let path = project.dir.join(&node.path);
    engine.seed_plan(&path.to_string_lossy(), &overrides, delimiter).await.map_err(|e| {
        let text = crate::plan::clean_message(&e);
        // DataFusion names the file by its absolute path; the diagnostic names it already.
        let text = text.rsplit("caused by\n").next().unwrap_or(&text).to_string();
        Diagnostic::error(format!("cannot read seed: {text}"))
            .at(&node.path, csv_error_line(&text).unwrap_or(0), 0)
            .with_help("a seed is a CSV file with a header row and the same number of fields on every line")
    })
}

/// The 1-based line of the CSV file that an arrow CSV error names: a
/// value that does not parse is reported by its record (the header not
/// counted), a row of the wrong width by its line.
pub fn csv_error_line(message: &str) -> Option<usize> {
    let n: usize =
        message.split(" at line ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some(if message.contains("Error while parsing value") { n + 1 } else { n })
}

fn unknown_type(file: &Path, column: &str, t: &str) -> Diagnostic {
    Diagnostic::error(format!("column `{column}`: unknown data type `{t}`"))
        .in_file(file)
        .with_help("use one of: varchar, boolean, int, bigint, double, decimal(p,s), date, timestamp")
}

/// Why a local source location is refused: outside the project folder and
/// every allowed root (checked on the real path, through symlinks).
fn check_local_root(project: &Project, allowed_roots: &[PathBuf], url: &url::Url) -> Result<(), RootRefused> {
    let path = url.to_file_path().map_err(|()| RootRefused::NotLocal)?;
    // A glob (`raw/*.parquet`) or a folder not made yet: the deepest existing ancestor.
    let mut probe = path.clone();
    let real = loop {
        if let Ok(real) = std::fs::canonicalize(&probe) {
            break real;
        }
        if !probe.pop() {
            return Err(RootRefused::NoFolder);
        }
    };
    if real.starts_with(&project.dir) || allowed_roots.iter().any(|r| real.starts_with(r)) {
        return Ok(());
    }
    Err(RootRefused::Outside(real))
}

#[derive(Debug, thiserror::Error)]
enum RootRefused {
    #[error("is not a local path")]
    NotLocal,
    #[error("has no existing folder above it")]
    NoFolder,
    #[error("resolves to {}, outside the project folder", .0.display())]
    Outside(PathBuf),
}

async fn register_source(
    project: &Project,
    renderer: &Renderer,
    engine: &Engine,
    allowed_roots: &[PathBuf],
    key: &(String, String),
) -> Result<(String, SchemaRef), Diagnostic> {
    let decl = &project.sources[key];
    let at = |d: Diagnostic| d.at(&decl.file, decl.line, 0);
    let location = decl.location.as_ref().ok_or_else(|| {
        at(Diagnostic::error(format!("source table `{}.{}` has no location", key.0, key.1))
            .with_help("set `location:` on the source (a folder holding <table>/*.parquet) or on the table, e.g. location: \"{{ var('raw_root') }}\""))
    })?;
    let rendered = renderer.render_str(&decl.file, location).map_err(at)?;
    let url = location_url(&project.dir, rendered.trim()).ok_or_else(|| {
        at(Diagnostic::error(format!(
            "source `{}.{}`: location `{rendered}` is not a path or URL",
            key.0, key.1
        )))
    })?;
    let mut declared = Vec::new();
    for c in &decl.columns {
        if let Some(t) = &c.data_type {
            let dt: DataType = parse_type(t).ok_or_else(|| at(unknown_type(&decl.file, &c.name, t)))?;
            declared.push((c.name.clone(), dt));
        }
    }
    let all_declared = !decl.columns.is_empty() && declared.len() == decl.columns.len();
    if url.scheme() == "file" {
        check_local_root(project, allowed_roots, &url).map_err(|why| {
            at(Diagnostic::error(format!("source `{}.{}`: location {url} {why}", key.0, key.1)).with_help(
                "data outside the project is read only from a root the operator allows: `allowed_roots: [<dir>]` in the profile's target, or `--allow-root <dir>`",
            ))
        })?;
    }
    engine.register_store(&url).map_err(|e| {
        at(Diagnostic::error(format!("source `{}.{}`: cannot reach {url}: {e}", key.0, key.1)))
    })?;
    // A source with no files would publish its readers empty over good data
    // (a typo'd `raw_root`, a delivery that did not arrive): an error, unless
    // the table declares that empty is a valid state.
    let has_files = engine.has_files(url.as_str()).await.map_err(|e| {
        at(Diagnostic::error(format!(
            "source `{}.{}`: cannot list {url}: {}",
            key.0,
            key.1,
            crate::plan::clean_message(&e)
        )))
    })?;
    if !has_files && !decl.allow_empty {
        return Err(at(Diagnostic::error(format!("source `{}.{}`: no Parquet files at {url}", key.0, key.1)).with_help(
            "check the location (and vars such as raw_root); if an empty table is a valid state, declare `allow_empty: true` on the source table",
        )));
    }
    let schema = match engine.register_source(&key.0, &key.1, url.as_str(), &declared, all_declared).await {
        Ok(schema) => schema,
        Err(e) => {
            let message = match engine.unreadable_footer(url.as_str()).await {
                Some((file, why)) => {
                    format!("source `{}.{}`: {file} is not a readable Parquet file: {why}", key.0, key.1)
                }
                None => format!("source `{}.{}` at {url}: {}", key.0, key.1, crate::plan::clean_message(&e)),
            };
            return Err(at(Diagnostic::error(message).with_help(
                "the location must hold Parquet files; replace or remove a damaged or truncated one",
            )));
        }
    };
    Ok((url.to_string(), schema))
}

fn materialization(config: &ConfigLayer, file: &Path, text: &str) -> Result<Materialization, Diagnostic> {
    let Some(v) = config.get("materialized") else {
        return Ok(Materialization::View);
    };
    let s = v.as_str().unwrap_or_default();
    match Materialization::parse(s) {
        Some(Materialization::Seed) | None => {
            let line = text.lines().position(|l| l.contains("materialized")).map_or(0, |i| i + 1);
            Err(Diagnostic::error(format!("unknown materialization `{s}`"))
                .at(file, line, 0)
                .with_help("use one of: view, table, ephemeral, incremental"))
        }
        Some(m) => Ok(m),
    }
}

/// Where `ref('name')` appears in a model's text.
fn ref_position(text: &str, name: &str) -> Option<(usize, usize)> {
    for q in ['\'', '"'] {
        if let Some(pos) = text.find(&format!("ref({q}{name}{q}")) {
            return Some(crate::diagnostic::line_col(text, pos));
        }
    }
    None
}
