//! Render a model's Jinja SQL, recording what it touches.
//!
//! `ref`, `source` and `config` do not only return text: each call records the
//! dependency or setting in a render-local extension ([`Touched`]), so the DAG
//! comes from what the template really used, including inside macros and
//! branches actually taken, never from a regex over the SQL.
//!
//! Macros from `macros/*.sql` are callable from any model without an import:
//! each model is rendered with one `{% from ... import ... %}` per macro file
//! prepended *on its first line*, so line numbers in errors stay the user's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Object, Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, did_you_mean, line_col};
use crate::project::{ConfigLayer, Project, RenderBudget};

/// What rendering a model produced.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub sql: String,
    /// Models and seeds referenced with `ref()`, in first-use order, unique.
    pub refs: Vec<String>,
    /// (source, table) pairs referenced with `source()`, unique.
    pub sources: Vec<(String, String)>,
    /// Keys set by `{{ config(...) }}` in the model.
    pub config: ConfigLayer,
}

/// Render-local record of what the template touched.
#[derive(Default)]
struct Touched {
    refs: Vec<String>,
    sources: Vec<(String, String)>,
    config: ConfigLayer,
}

/// Facts about the run exposed to templates (`target`, `run_started_at`).
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub name: String,
    pub profile_name: String,
    #[serde(rename = "type")]
    pub engine: String,
    pub threads: usize,
    pub warehouse: String,
}

pub struct Renderer {
    env: Environment<'static>,
    prelude: String,
    budget: RenderBudget,
}

/// Environment variables that hold secrets (dbt's `DBT_ENV_SECRET_` prefix,
/// and tally's own spelling): readable in profiles only, so a secret never
/// lands in compiled SQL, a table's data or its statistics.
pub const SECRET_PREFIXES: [&str; 2] = ["DBT_ENV_SECRET_", "TALLY_SECRET_"];

/// A relation as templates see it: renders as a quoted SQL identifier and has
/// dbt's `.name`, `.identifier`, `.schema` attributes.
#[derive(Debug)]
struct Relation {
    schema: Option<String>,
    name: String,
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => f.write_str(&quote_ident(&self.name)),
        }
    }
}

impl Object for Relation {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" | "identifier" | "table" => Some(Value::from(self.name.clone())),
            "schema" => Some(Value::from(self.schema.clone().unwrap_or_else(|| "public".into()))),
            "database" => Some(Value::from("tally")),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Double-quote an identifier for DataFusion SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Renderer {
    pub fn new(
        project: &Project,
        target: &TargetInfo,
        run_started_at: &str,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // SQL and YAML values are never HTML/JSON-escaped (minijinja escapes
        // by file extension by default, which would quote strings in .yml).
        env.set_auto_escape_callback(|_| AutoEscape::None);
        if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        add_relations(&mut env, project);
        add_context(&mut env, project, target, run_started_at);
        env.set_fuel(Some(project.render_budget.instructions));
        let prelude = load_macros(&mut env, project)?;
        Ok(Renderer { env, prelude, budget: project.render_budget })
    }

    /// Render one model (or any templated text belonging to `file`).
    /// `this` is the model's own relation.
    pub fn render(&self, file: &Path, text: &str, this: &str) -> Result<Rendered, Diagnostic> {
        let source = format!("{}{}", self.prelude, text);
        let name = template_name(file);
        let tmpl = self
            .env
            .template_from_named_str(&name, source.as_str())
            .map_err(|e| template_error(file, text, self.prelude.len(), &e))?;
        let ctx = minijinja::context! { this => Value::from_object(Relation { schema: None, name: this.to_string() }) };
        let mut out = Capped { bytes: Vec::new(), limit: self.budget.output_bytes, exceeded: false };
        let rendered = tmpl.render_captured_to(ctx, &mut out).map_err(|e| {
            let d = template_error(file, text, self.prelude.len(), &e);
            match e.kind() {
                ErrorKind::OutOfFuel => {
                    over_budget(d, format!("{} instructions", self.budget.instructions), "instructions")
                }
                ErrorKind::WriteFailure if out.exceeded => {
                    over_budget(d, format!("{} bytes of SQL", self.budget.output_bytes), "output-bytes")
                }
                _ => d,
            }
        });
        let mut captured = rendered?;
        let touched = captured
            .with_state_mut(|s| s.get_extension_mut::<Touched>().map(std::mem::take))
            .unwrap_or_default();
        // minijinja writes only `str`s, so the bytes are UTF-8.
        let sql = String::from_utf8_lossy(&out.bytes).into_owned();
        Ok(Rendered { sql, refs: touched.refs, sources: touched.sources, config: touched.config })
    }

    /// Render a short templated string such as a source `location`.
    pub fn render_str(&self, file: &Path, text: &str) -> Result<String, Diagnostic> {
        self.render(file, text, "").map(|r| r.sql)
    }
}

/// `ref` and `source`: each resolves to a relation and records what it touched.
fn add_relations(env: &mut Environment<'static>, project: &Project) {
    let nodes: Arc<BTreeSet<String>> = Arc::new(project.node_names().map(str::to_string).collect());
    let sources: Arc<BTreeSet<(String, String)>> = Arc::new(project.sources.keys().cloned().collect());

    env.add_function("ref", move |state: &mut State<'_, '_>, a: String, b: Option<String>| {
        if let Some(b) = b {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("ref('{a}', '{b}'): two-argument ref (models from another package) is not supported; use ref('{b}')"),
            ));
        }
        if !nodes.contains(&a) {
            let hint = did_you_mean(&a, nodes.iter().map(String::as_str))
                .unwrap_or_else(|| "no model or seed has a similar name".into());
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("ref('{a}'): no model or seed named `{a}`; {hint}")));
        }
        let t = state.get_or_insert_extension(Touched::default());
        if !t.refs.contains(&a) {
            t.refs.push(a.clone());
        }
        Ok(Value::from_object(Relation { schema: None, name: a }))
    });
    env.add_function("source", move |state: &mut State<'_, '_>, s: String, t: String| {
        let key = (s.clone(), t.clone());
        if !sources.contains(&key) {
            let names: Vec<String> = sources.iter().map(|(a, b)| format!("{a}.{b}")).collect();
            let hint = did_you_mean(&format!("{s}.{t}"), names.iter().map(String::as_str))
                .unwrap_or_else(|| "declare it under `sources:` in a YAML file in models/".into());
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("source('{s}', '{t}'): no such source table; {hint}"),
            ));
        }
        let touched = state.get_or_insert_extension(Touched::default());
        if !touched.sources.contains(&key) {
            touched.sources.push(key);
        }
        Ok(Value::from_object(Relation { schema: Some(s), name: t }))
    });
}

/// `config`, `var`, `env_var`, `is_incremental` and the run's globals.
fn add_context(env: &mut Environment<'static>, project: &Project, target: &TargetInfo, run_started_at: &str) {
    let vars = Arc::new(project.vars.clone());
    env.add_function("config", |state: &mut State<'_, '_>, kwargs: Kwargs| {
        let touched = state.get_or_insert_extension(Touched::default());
        for key in kwargs.args() {
            let v: Value = kwargs.get(key)?;
            let json = serde_json::to_value(&v).map_err(|e| {
                minijinja::Error::new(ErrorKind::InvalidOperation, format!("config({key}=...): {e}"))
            })?;
            touched.config = crate::project::merge_config([
                std::mem::take(&mut touched.config),
                BTreeMap::from([(key.to_string(), json)]),
            ]);
        }
        kwargs.assert_all_used()?;
        Ok(Value::from(""))
    });
    env.add_function("var", move |name: String, default: Option<Value>| match vars.get(&name) {
        Some(v) => Ok(Value::from(Serde(v.clone()))),
        None => default.ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("var('{name}') is not set; define it under `vars:` in the project file, pass --vars '{{{name}: ...}}', or give a default: var('{name}', ...)"),
            )
        }),
    });
    env.add_function("env_var", |name: String, default: Option<Value>| {
        if SECRET_PREFIXES.iter().any(|p| name.starts_with(p)) {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("env_var('{name}'): variables named {}* hold secrets and may be read only in profiles/profiles.yml, never in models, macros or YAML (their values would land in compiled SQL and in the data)", SECRET_PREFIXES.join("* or ")),
            ));
        }
        env_var(name, default)
    });
    env.add_function("is_incremental", || false);
    env.add_global("target", Value::from(Serde(target.clone())));
    env.add_global("run_started_at", Value::from(run_started_at.to_string()));
    env.add_global("project_name", Value::from(project.name.clone()));
}

/// Every macro file as a template; the prelude that imports their macros
/// into each model. Two macros with one name are an error.
fn load_macros(env: &mut Environment<'static>, project: &Project) -> Result<String, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut prelude = String::new();
    let mut defined: BTreeMap<String, &Path> = BTreeMap::new();
    for m in &project.macros {
        let name = template_name(&m.path);
        if let Err(e) = env.add_template_owned(name.clone(), m.text.clone()) {
            errors.push(template_error(&m.path, &m.text, 0, &e));
            continue;
        }
        let exports = match env.get_template(&name).and_then(|t| t.render_captured(())) {
            Ok(captured) => captured.state().exports().into_iter().map(str::to_string).collect::<Vec<_>>(),
            Err(e) => {
                errors.push(template_error(&m.path, &m.text, 0, &e));
                continue;
            }
        };
        for name in &exports {
            if let Some(first) = defined.insert(name.clone(), &m.path) {
                let line = macro_line(&m.text, name);
                errors.push(
                    Diagnostic::error(format!(
                        "macro `{name}` is defined twice: in {} and here",
                        first.display()
                    ))
                    .at(&m.path, line, 0)
                    .with_help(
                        "rename or delete one of them: which one a model called would depend on file order",
                    ),
                );
            }
        }
        if !exports.is_empty() {
            prelude.push_str(&format!("{{% from {name:?} import {} %}}", exports.join(", ")));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(prelude)
}

/// The rendered SQL, refusing to grow past the budget.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("the render budget's output-bytes is used up"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn over_budget(d: Diagnostic, what: String, key: &str) -> Diagnostic {
    let at = d.location.clone();
    let mut out = Diagnostic::error(format!("rendering stopped: the template went over its budget of {what}"))
        .with_help(format!("look for a loop that does not end or a string that grows without bound; if the template really needs more, raise `render-budget: {{{key}: ...}}` in the project file"));
    out.location = at;
    out
}

/// 1-based line of `{% macro name(` in a macro file (0 if not found).
fn macro_line(text: &str, name: &str) -> usize {
    text.lines()
        .position(|l| {
            l.split("macro")
                .nth(1)
                .is_some_and(|r| r.trim_start().starts_with(&format!("{name}(")) || r.trim_start() == name)
        })
        .map_or(0, |i| i + 1)
}

/// Why a profile value does not render: minijinja's own words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(String);

/// A profile value: `{{ env_var('VAR') }}` / `{{ env_var('VAR', 'default') }}`
/// rendered, as in models (nothing else is defined there).
pub fn render_env(text: &str) -> Result<String, EnvError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_function("env_var", env_var);
    env.render_str(text, ())
        .map_err(|e| EnvError(e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string())))
}

fn env_var(name: String, default: Option<Value>) -> Result<Value, minijinja::Error> {
    match std::env::var(&name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("env_var('{name}'): the environment variable is not set and no default was given"),
            )
        }),
    }
}

fn template_name(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// Turn a minijinja error into a diagnostic pointing into the user's file.
/// `prefix` bytes were prepended to the first line before rendering.
fn template_error(file: &Path, text: &str, prefix: usize, e: &minijinja::Error) -> Diagnostic {
    // An error raised inside a macro file points at that file.
    let (file, text, prefix): (PathBuf, String, usize) = match e.name() {
        Some(n) if n != template_name(file) => match e.template_source() {
            Some(src) => (PathBuf::from(n), src.to_string(), 0),
            None => (PathBuf::from(n), String::new(), 0),
        },
        _ => (file.to_path_buf(), text.to_string(), prefix),
    };
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    let message = format!("template error: {detail}");
    let span = e.range().filter(|r| r.start >= prefix).and_then(|r| {
        let (start, end) = (r.start - prefix, r.end.saturating_sub(prefix));
        text.get(start..end.min(text.len())).map(|s| (start, s.chars().count()))
    });
    let (line, column, len) = match (span, e.line()) {
        (Some((start, len)), _) => {
            let (l, c) = line_col(&text, start);
            (l, c, len)
        }
        (None, Some(l)) => (l, 0, 0),
        (None, None) => (0, 0, 0),
    };
    let mut d = Diagnostic::error(message).at(file, line, column).with_span_len(len);
    if matches!(e.kind(), ErrorKind::UndefinedError) {
        d = d.with_help(
            "an undefined variable or attribute: check the spelling, or use `var()` for project variables",
        );
    }
    d
}

#[cfg(test)]
mod tests {

    #[test]
    fn profile_values_render_env_var_only() {
        assert_eq!(render_env("plain").unwrap(), "plain");
        assert_eq!(render_env("{{ env_var('TALLY_TEST_UNSET_PROFILE_VAR', 'dflt') }}").unwrap(), "dflt");
        let e = render_env("{{ env_var('TALLY_TEST_UNSET_PROFILE_VAR') }}").unwrap_err();
        assert!(e.to_string().contains("not set and no default"), "{e}");
    }
    use super::*;
    use crate::project;

    fn fixture(models: &[(&str, &str)], macros: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tally_project.yml"), "name: p\nvars:\n  x: 7\n").unwrap();
        for (p, t) in models.iter().chain(macros) {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        }
        let p = project::load(dir.path(), &BTreeMap::new()).unwrap();
        (dir, p)
    }

    fn target() -> TargetInfo {
        TargetInfo {
            name: "dev".into(),
            profile_name: "p".into(),
            engine: "datafusion".into(),
            threads: 2,
            warehouse: "w".into(),
        }
    }

    #[test]
    fn records_refs_config_and_macros() {
        let (_d, p) = fixture(
            &[
                ("models/a.sql", "select 1 as x"),
                (
                    "models/b.sql",
                    "{{ config(materialized='table', tags=['t']) }}\nselect {{ twice('x') }} , {{ var('x') }} from {{ ref('a') }}",
                ),
            ],
            &[("macros/m.sql", "{% macro twice(c) %}{{ c }} * 2{% endmacro %}")],
        );
        let r = Renderer::new(&p, &target(), "2024-01-01T00:00:00Z").unwrap();
        let out = r.render(Path::new("models/b.sql"), &p.models["b"].sql, "b").unwrap();
        assert_eq!(out.sql, "\nselect x * 2 , 7 from \"a\"");
        assert_eq!(out.refs, vec!["a"]);
        assert_eq!(out.config["materialized"], "table");
    }

    #[test]
    fn context_functions_and_refs_inside_macros() {
        let (_d, p) = fixture(
            &[
                ("models/a.sql", "select 1 as x"),
                (
                    "models/b.sql",
                    "select '{{ env_var('TALLY_TEST_UNSET_VAR', 'dflt') }}', '{{ target.name }}', '{{ this }}', '{{ this.name }}', {{ is_incremental() }}, x from {{ upstream() }}",
                ),
            ],
            &[("macros/m.sql", "{% macro upstream() %}{{ ref('a') }}{% endmacro %}")],
        );
        let r = Renderer::new(&p, &target(), "t").unwrap();
        let out = r.render(Path::new("models/b.sql"), &p.models["b"].sql, "b").unwrap();
        assert_eq!(out.sql, "select 'dflt', 'dev', '\"b\"', 'b', False, x from \"a\"");
        // The ref made inside the macro is a dependency of the model.
        assert_eq!(out.refs, vec!["a"]);
    }

    #[test]
    fn two_argument_ref_and_unset_env_var_are_errors() {
        let (_d, p) = fixture(
            &[("models/a.sql", "select 1"), ("models/b.sql", "select * from {{ ref('pkg', 'a') }}")],
            &[],
        );
        let r = Renderer::new(&p, &target(), "t").unwrap();
        let e = r.render(Path::new("models/b.sql"), &p.models["b"].sql, "b").unwrap_err();
        assert!(e.message.contains("two-argument ref"), "{}", e.message);
        let e =
            r.render(Path::new("models/c.sql"), "{{ env_var('TALLY_TEST_UNSET_VAR') }}", "c").unwrap_err();
        assert!(e.message.contains("not set"), "{}", e.message);
        let e = r.render(Path::new("models/c.sql"), "{{ var('nope') }}", "c").unwrap_err();
        assert!(e.message.contains("var('nope') is not set"), "{}", e.message);
    }

    #[test]
    fn missing_ref_names_line_and_suggests() {
        let (_d, p) = fixture(
            &[
                ("models/stg_accounts.sql", "select 1"),
                ("models/b.sql", "select *\nfrom {{ ref('stg_acounts') }}"),
            ],
            &[],
        );
        let r = Renderer::new(&p, &target(), "t").unwrap();
        let e = r.render(Path::new("models/b.sql"), &p.models["b"].sql, "b").unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 2);
        assert!(e.message.contains("did you mean `stg_accounts`?"), "{}", e.message);
    }
}
