//! Read the project from disk into a validated [`Project`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::config::{folder_layers, merge, yaml_layer};
use super::files::{
    ColumnDecl, DBT_PROJECT_KEYS_IGNORED, DBT_PROPERTIES_KEYS_IGNORED, ModelDecl, ProjectFile,
    PropertiesFile, SourceDecl,
};
use super::lines::PropertiesText;
use super::paths;
use super::{
    Column, MacroFile, Model, Project, RenderBudget, Seed, SingularTest, SourceTable, TestDecl, yaml,
};
use crate::diagnostic::{Diagnostic, did_you_mean, line_col};
use crate::error::{Error, Result};

pub const PROJECT_FILES: [&str; 2] = ["tally_project.yml", "dbt_project.yml"];

/// Load the project in `dir`, with `cli_vars` (from `--vars`) over the project's vars.
pub fn load(dir: &Path, cli_vars: &BTreeMap<String, serde_json::Value>) -> Result<Project> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io("cannot open project directory", dir, e))?;
    let file = PROJECT_FILES.iter().map(PathBuf::from).find(|f| dir.join(f).is_file()).ok_or_else(|| {
        Diagnostic::error(format!("no tally_project.yml or dbt_project.yml in {}", dir.display())).with_help(
            "run tally from a project directory, pass --project-dir, or create one with `tally init <dir>`",
        )
    })?;
    let mut warnings = Vec::new();
    let project_text = read(&dir, &file)?;
    let mut pf: ProjectFile = yaml::parse(&file, &project_text, DBT_PROJECT_KEYS_IGNORED, &mut warnings)?;
    configured_paths(&dir, &file, &project_text, &mut pf)?;

    let mut vars: BTreeMap<String, serde_json::Value> =
        pf.vars.iter().filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?))).collect();
    vars.extend(cli_vars.clone());

    let mut errors = Vec::new();
    let (mut props, model_files) = read_properties(&dir, &pf.model_paths, &mut warnings, &mut errors)?;
    let models = load_models(&dir, &pf, model_files, &mut props, &mut errors)?;
    let seeds = load_seeds(&dir, &pf, (&file, &project_text), &models, &mut props, &mut errors)?;

    for (name, (file, line)) in props.model_lines {
        if !models.contains_key(&name) && !seeds.contains_key(&name) {
            let mut w = Diagnostic::error(format!(
                "properties declared for model `{name}`, but no such model file exists"
            ))
            .at(&file, line, 0);
            if let Some(h) = did_you_mean(&name, models.keys().map(String::as_str)) {
                w = w.with_help(h);
            }
            warnings.push(w);
        }
    }

    let macros =
        sql_files(&dir, &pf.macro_paths)?.into_iter().map(|(path, text)| MacroFile { path, text }).collect();
    // dbt's singular tests: each `.sql` file under the test paths is a query
    // returning failing rows.
    let singular_tests = sql_files(&dir, &pf.test_paths)?
        .into_iter()
        .map(|(path, sql)| SingularTest { name: stem(&path), path, sql })
        .collect();

    errors.extend(props.errors);
    if !errors.is_empty() {
        return Err(Error::Project(errors));
    }
    // Normalised and checked by `configured_paths`.
    let mut clean_targets: Vec<PathBuf> = pf.clean_targets.iter().map(PathBuf::from).collect();
    if clean_targets.is_empty() {
        clean_targets.push(PathBuf::from(&pf.target_path));
    }
    let defaults = RenderBudget::default();
    let render_budget = RenderBudget {
        instructions: pf.render_budget.as_ref().and_then(|b| b.instructions).unwrap_or(defaults.instructions),
        output_bytes: pf.render_budget.as_ref().and_then(|b| b.output_bytes).unwrap_or(defaults.output_bytes),
    };
    Ok(Project {
        render_budget,
        dir,
        name: pf.name,
        file,
        profile: pf.profile,
        target_path: PathBuf::from(pf.target_path),
        clean_targets,
        vars,
        models,
        seeds,
        sources: props.sources,
        macros,
        singular_tests,
        warnings,
    })
}

/// The properties of every YAML file under the model paths (read and parsed
/// on all cores: a large project has thousands, then merged in path order,
/// so diagnostics do not depend on timing), and the model files found there
/// as (root, path).
fn read_properties(
    dir: &Path,
    model_paths: &[String],
    warnings: &mut Vec<Diagnostic>,
    errors: &mut Vec<Diagnostic>,
) -> Result<(Properties, Vec<(String, PathBuf)>)> {
    let mut props = Properties::default();
    let mut model_files = Vec::new();
    let mut yaml_files = Vec::new();
    for root in model_paths {
        for path in walk(dir, Path::new(root))? {
            match path.extension().and_then(|e| e.to_str()) {
                Some("sql") => model_files.push((root.clone(), path)),
                Some("yml" | "yaml") => yaml_files.push(path),
                _ => {}
            }
        }
    }
    // Files are read and parsed on all cores (a large project has thousands),
    // then merged in path order, so diagnostics do not depend on timing.
    let parsed = yaml_files
        .into_par_iter()
        .map(|path| {
            let text = read(dir, &path)?;
            let mut file_warnings = Vec::new();
            let parsed =
                yaml::parse::<PropertiesFile>(&path, &text, DBT_PROPERTIES_KEYS_IGNORED, &mut file_warnings);
            Ok((path, PropertiesText::new(text), parsed, file_warnings))
        })
        .collect::<Result<Vec<_>>>()?;
    for (path, text, parsed, file_warnings) in parsed {
        warnings.extend(file_warnings);
        match parsed {
            Ok(parsed) => props.add(&path, text, parsed),
            Err(d) => errors.push(d),
        }
    }
    Ok((props, model_files))
}

/// Every model file, its properties and folder config merged; a disabled
/// model is left out.
fn load_models(
    dir: &Path,
    pf: &ProjectFile,
    model_files: Vec<(String, PathBuf)>,
    props: &mut Properties,
    errors: &mut Vec<Diagnostic>,
) -> Result<BTreeMap<String, Model>> {
    let texts = model_files
        .par_iter()
        .map(|(_, path)| read(dir, path).map(|sql| (checksum(&sql), sql)))
        .collect::<Result<Vec<_>>>()?;

    let mut models = BTreeMap::new();
    for ((root, path), (checksum, sql)) in model_files.into_iter().zip(texts) {
        let name = stem(&path);
        if let Some(d) = name_error("model", &name, &path) {
            errors.push(d);
            continue;
        }
        let decl = props.models.remove(&name);
        let segments = folders_below(root.as_ref(), &path);
        let mut layers = folder_layers(pf.models.as_ref(), &pf.name, &segments);
        if let Some((_, d)) = &decl {
            layers.push(yaml_layer(&d.config));
        }
        let config = merge(layers);
        if config.get("enabled") == Some(&serde_json::Value::Bool(false)) {
            continue;
        }
        let (tests, description, columns) = props.described(decl.as_ref());
        let model = Model {
            tests,
            checksum,
            description,
            columns,
            properties_file: decl.map(|(f, _)| f),
            name: name.clone(),
            path,
            sql,
            config,
        };
        if let Some(prev) = models.insert(name.clone(), model) {
            errors.push(
                Diagnostic::error(format!(
                    "two models are named `{name}`: {} and this file",
                    prev.path.display()
                ))
                .in_file(&models[&name].path)
                .with_help("model names must be unique across the project: rename one of the files"),
            );
        }
    }

    Ok(models)
}

/// Every seed (CSV) under the seed paths, with its properties.
fn load_seeds(
    dir: &Path,
    pf: &ProjectFile,
    project_file: (&Path, &str),
    models: &BTreeMap<String, Model>,
    props: &mut Properties,
    errors: &mut Vec<Diagnostic>,
) -> Result<BTreeMap<String, Seed>> {
    let (file, project_text) = project_file;
    let mut seeds = BTreeMap::new();
    for root in &pf.seed_paths {
        for path in walk(dir, Path::new(root))? {
            if path.extension().and_then(|e| e.to_str()) != Some("csv") {
                continue;
            }
            let name = stem(&path);
            if let Some(d) = name_error("seed", &name, &path) {
                errors.push(d);
                continue;
            }
            let text = read(dir, &path)?;
            if text.trim().is_empty() {
                errors.push(
                    Diagnostic::error(format!("seed `{name}` is empty"))
                        .in_file(&path)
                        .with_help("a seed is a CSV file with a header row: add one, or delete the file"),
                );
                continue;
            }
            let decl = props.seeds.remove(&name);
            let config_at = match &decl {
                Some((f, d)) if d.config.contains_key("column_types") => {
                    let t = &props.texts[f];
                    let start = t.name_line(&d.name, 0).unwrap_or(0);
                    Some((f.clone(), t.key_line("column_types", start).map_or(start + 1, |l| l + 1)))
                }
                _ => project_text
                    .lines()
                    .position(|l| l.contains("column_types"))
                    .map(|l| (file.to_path_buf(), l + 1)),
            };
            let mut layers = folder_layers(pf.seeds.as_ref(), &pf.name, &folders_below(root.as_ref(), &path));
            if let Some((_, d)) = &decl {
                layers.push(yaml_layer(&d.config));
            }
            let (tests, description, columns) = props.described(decl.as_ref());
            let seed = Seed {
                config_at,
                tests,
                checksum: checksum(&text),
                description,
                columns,
                config: merge(layers),
                name: name.clone(),
                path: path.clone(),
            };
            if models.contains_key(&name) {
                errors.push(
                    Diagnostic::error(format!("seed `{name}` has the same name as a model"))
                        .in_file(&path)
                        .with_help(
                            "rename the seed file or the model: `ref()` must name exactly one of them",
                        ),
                );
            }
            seeds.insert(name, seed);
        }
    }
    Ok(seeds)
}

/// The `.sql` files under `roots`, with their text, in path order.
fn sql_files(dir: &Path, roots: &[String]) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for root in roots {
        for path in walk(dir, Path::new(root))? {
            if path.extension().and_then(|e| e.to_str()) == Some("sql") {
                let text = read(dir, &path)?;
                out.push((path, text));
            }
        }
    }
    Ok(out)
}

/// Properties gathered from every YAML file under the model paths.
#[derive(Default)]
struct Properties {
    /// File texts, to locate each test's line.
    texts: BTreeMap<PathBuf, PropertiesText>,
    models: BTreeMap<String, (PathBuf, ModelDecl)>,
    seeds: BTreeMap<String, (PathBuf, ModelDecl)>,
    model_lines: BTreeMap<String, (PathBuf, usize)>,
    sources: BTreeMap<(String, String), SourceTable>,
    errors: Vec<Diagnostic>,
}

impl Properties {
    /// A model's or seed's tests, description and columns from its
    /// properties entry (none without one).
    fn described(&self, decl: Option<&(PathBuf, ModelDecl)>) -> (Vec<TestDecl>, Option<String>, Vec<Column>) {
        let Some((f, d)) = decl else { return Default::default() };
        let tests = tests_of(f, &self.texts[f], &d.name, &d.columns, &d.tests, &d.data_tests);
        (tests, d.description.clone(), columns(&d.columns))
    }

    fn add(&mut self, file: &Path, text: PropertiesText, parsed: PropertiesFile) {
        for m in parsed.models {
            let line = text.line_in_section("models", &m.name);
            if let Some((prev, _)) = self.models.get(&m.name) {
                self.errors.push(
                    Diagnostic::error(format!(
                        "model `{}` is described twice (also in {})",
                        m.name,
                        prev.display()
                    ))
                    .at(file, line, 0)
                    .with_help("keep one properties entry per model"),
                );
                continue;
            }
            self.model_lines.insert(m.name.clone(), (file.to_path_buf(), line));
            self.models.insert(m.name.clone(), (file.to_path_buf(), m));
        }
        for s in parsed.seeds {
            self.seeds.insert(s.name.clone(), (file.to_path_buf(), s));
        }
        for source in parsed.sources {
            self.add_source(file, &text, source);
        }
        self.texts.insert(file.to_path_buf(), text);
    }

    fn add_source(&mut self, file: &Path, text: &PropertiesText, source: SourceDecl) {
        let source_location = source.location.clone().or_else(|| meta_location(&source.meta));
        for t in source.tables {
            let identifier = t.identifier.clone().unwrap_or_else(|| t.name.clone());
            let own = t.location.clone().or_else(|| meta_location(&t.meta));
            let location = match (own, &source_location) {
                (Some(own), _) => Some(own),
                (None, Some(root)) if root.contains("{name}") || root.contains("{identifier}") => {
                    Some(root.clone())
                }
                (None, Some(root)) => Some(format!("{}/{}", root.trim_end_matches('/'), identifier)),
                (None, None) => None,
            }
            .map(|l| l.replace("{name}", &t.name).replace("{identifier}", &identifier));
            let key = (source.name.clone(), t.name.clone());
            let line = text.line_in_section("tables", &t.name);
            if self.sources.contains_key(&key) {
                self.errors.push(
                    Diagnostic::error(format!("source table `{}.{}` is declared twice", key.0, key.1))
                        .at(file, line, 0),
                );
                continue;
            }
            self.sources.insert(
                key,
                SourceTable {
                    source: source.name.clone(),
                    name: t.name.clone(),
                    identifier,
                    description: t.description.clone(),
                    location,
                    loaded_at_field: t.loaded_at_field.clone().or_else(|| source.loaded_at_field.clone()),
                    columns: columns(&t.columns),
                    // The table's own setting, then its config's, then the source's.
                    allow_empty: t
                        .allow_empty
                        .or_else(|| t.config.get("allow_empty").and_then(|v| v.as_bool()))
                        .or(source.allow_empty)
                        .or_else(|| source.config.get("allow_empty").and_then(|v| v.as_bool()))
                        .unwrap_or(false),
                    tests: {
                        let mut tests = tests_of(file, text, &t.name, &t.columns, &t.tests, &t.data_tests);
                        // dbt source freshness (the table's block overrides the source's; `null` turns it off).
                        let block = match &t.freshness {
                            Some(serde_yaml_ng::Value::Null) => None,
                            Some(f) => Some(f.clone()),
                            None => source.freshness.clone(),
                        };
                        let field = t.loaded_at_field.clone().or_else(|| source.loaded_at_field.clone());
                        if let (Some(serde_yaml_ng::Value::Mapping(mut f)), Some(field)) = (block, field) {
                            f.insert("column".into(), field.into());
                            let spec = serde_yaml_ng::Value::Mapping(
                                [("freshness".into(), serde_yaml_ng::Value::Mapping(f))]
                                    .into_iter()
                                    .collect(),
                            );
                            tests.push(TestDecl { column: None, spec, file: file.to_path_buf(), line });
                        }
                        tests
                    },
                    file: file.to_path_buf(),
                    line,
                },
            );
        }
    }
}

/// dbt-duckdb's convention: `meta: {external_location: "s3://b/{name}.parquet"}`.
fn meta_location(meta: &BTreeMap<String, serde_yaml_ng::Value>) -> Option<String> {
    meta.get("external_location").and_then(|v| v.as_str()).map(str::to_string)
}

fn columns(decls: &[ColumnDecl]) -> Vec<Column> {
    decls
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            description: c.description.clone(),
            data_type: c.data_type.clone(),
        })
        .collect()
}

/// Every `tests:`/`data_tests:` entry of a model, seed or source table, with
/// the line it is on (found from the entry's test name, after the node's line).
fn tests_of(
    file: &Path,
    text: &PropertiesText,
    node: &str,
    cols: &[ColumnDecl],
    tests: &[serde_yaml_ng::Value],
    data_tests: &[serde_yaml_ng::Value],
) -> Vec<TestDecl> {
    let mut out = Vec::new();
    let node_line = text.name_line(node, 0);
    let mut from = node_line.unwrap_or(0);
    let end = node_line.map_or(usize::MAX, |l| text.block_end(l));
    let mut push = |column: Option<String>, spec: &serde_yaml_ng::Value| {
        let name = match spec {
            serde_yaml_ng::Value::String(s) => s.as_str(),
            serde_yaml_ng::Value::Mapping(m) => m.keys().next().and_then(|k| k.as_str()).unwrap_or_default(),
            _ => "",
        };
        let line = text.test_line(name, from, end).map_or(from + 1, |i| i + 1);
        from = line;
        out.push(TestDecl { column, spec: spec.clone(), file: file.to_path_buf(), line });
    };
    for c in cols {
        for spec in c.tests.iter().chain(&c.data_tests) {
            push(Some(c.name.clone()), spec);
        }
    }
    for spec in tests.iter().chain(data_tests) {
        push(None, spec);
    }
    out
}

/// A project file's text. It must resolve inside the project (a symlink to a
/// host file would carry that file into the warehouse, or into an error
/// message) and be UTF-8 (an error names the first bad byte's line).
fn read(dir: &Path, rel: &Path) -> Result<String> {
    let abs = dir.join(rel);
    let real = std::fs::canonicalize(&abs).map_err(|e| Error::io("cannot read", rel, e))?;
    if !real.starts_with(dir) {
        return Err(outside(rel, &real).into());
    }
    let bytes = std::fs::read(&real).map_err(|e| Error::io("cannot read", rel, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bad = e.as_bytes().get(valid).copied().unwrap_or_default();
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let (line, column) = line_col(&before, before.len());
        Diagnostic::error(format!("the file is not UTF-8 text (byte 0x{bad:02x})"))
            .at(rel, line, column)
            .with_help("save the file as UTF-8")
            .into()
    })
}

fn outside(rel: &Path, real: &Path) -> Diagnostic {
    Diagnostic::error(format!("resolves through a symlink to {}, outside the project folder; it is not read", real.display()))
        .in_file(rel)
        .with_help("copy the file into the project; data that lives elsewhere is a source (a `location:` under `sources:`)")
}

/// A model or seed name that cannot be a warehouse folder and SQL identifier.
fn name_error(kind: &str, name: &str, path: &Path) -> Option<Diagnostic> {
    let why = paths::invalid_name(name)?;
    Some(
        Diagnostic::error(format!("{kind} name `{name}` {why}"))
            .in_file(path)
            .with_help("rename the file: its name is the table's name in the warehouse"),
    )
}

/// Check and normalise every folder the project file configures: each must
/// stay inside the project (`target-path` and `clean-targets`, which tally
/// writes and deletes, may not be the project folder itself).
fn configured_paths(dir: &Path, file: &Path, text: &str, pf: &mut ProjectFile) -> Result<()> {
    let mut errors = Vec::new();
    let mut check = |key: &str, values: &mut Vec<String>, strict: bool| {
        for v in values.iter_mut() {
            let checked = if strict {
                paths::strictly_inside(dir, Path::new(v.as_str()))
            } else {
                paths::inside(dir, Path::new(v.as_str()))
            };
            match checked {
                Ok(norm) => *v = norm.to_string_lossy().into_owned(),
                Err(why) => errors.push(
                    Diagnostic::error(format!("`{key}: {v}` {why}"))
                        .at(file, yaml::line_of_key(text, key), 0)
                        .with_help("use a folder inside the project, e.g. `target`"),
                ),
            }
        }
    };
    check("model-paths", &mut pf.model_paths, false);
    check("macro-paths", &mut pf.macro_paths, false);
    check("seed-paths", &mut pf.seed_paths, false);
    check("test-paths", &mut pf.test_paths, false);
    check("clean-targets", &mut pf.clean_targets, true);
    let mut target = vec![std::mem::take(&mut pf.target_path)];
    check("target-path", &mut target, true);
    pf.target_path = target.pop().unwrap_or_default();
    if errors.is_empty() { Ok(()) } else { Err(Error::Project(errors)) }
}

fn checksum(text: &str) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(text.as_bytes()) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Folder names between `root` and the file, e.g. `models/staging/crm/x.sql` -> [staging, crm].
fn folders_below(root: &Path, path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.parent()
        .map(|p| p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Every file below `dir/root`, as project-relative paths, sorted. A missing
/// root is empty. A symlink is followed when it resolves inside the project
/// (each real folder is listed once, so a link cycle ends), and is an error
/// otherwise.
fn walk(dir: &Path, root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let Ok(real) = std::fs::canonicalize(&abs) else {
            continue;
        };
        if !real.is_dir() || !seen.insert(real.clone()) {
            continue;
        }
        if !real.starts_with(dir) {
            return Err(outside(&rel, &real).into());
        }
        let entries = std::fs::read_dir(&abs).map_err(|e| Error::io("cannot list", &rel, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", &rel, e))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let child = rel.join(&name);
            let file_type = entry.file_type().map_err(|e| Error::io("cannot list", &child, e))?;
            let is_dir = if file_type.is_symlink() {
                let target = std::fs::canonicalize(dir.join(&child))
                    .map_err(|e| Error::io("cannot follow the symlink", &child, e))?;
                if !target.starts_with(dir) {
                    return Err(outside(&child, &target).into());
                }
                target.is_dir()
            } else {
                file_type.is_dir()
            };
            if is_dir {
                stack.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parse `--vars` (YAML or JSON mapping).
pub fn parse_cli_vars(text: &str) -> Result<BTreeMap<String, serde_json::Value>> {
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| Error::Usage(format!("--vars is not valid YAML: {e}")))?;
    let json = serde_json::to_value(&value).map_err(|e| Error::Usage(format!("--vars: {e}")))?;
    match json {
        serde_json::Value::Object(map) => Ok(map.into_iter().collect()),
        serde_json::Value::Null => Ok(BTreeMap::new()),
        _ => Err(Error::Usage("--vars must be a mapping, e.g. --vars '{as_of: 2024-06-30}'".into())),
    }
}
