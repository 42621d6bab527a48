//! The loaded project: every model, seed, source and macro, validated.
//!
//! Loading reads files only; nothing is rendered or planned here. What a model
//! references, and its final config, are known after rendering (`render`).

mod config;
mod files;
mod lines;
mod load;
pub mod paths;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;

pub use config::{ConfigLayer, Materialization, merge as merge_config, tags_of};
pub use load::{PROJECT_FILES, load, parse_cli_vars};
pub use yaml::Warning;

#[derive(Debug)]
pub struct Project {
    /// Absolute project directory; every other path is relative to it.
    pub dir: PathBuf,
    pub name: String,
    /// `tally_project.yml` or `dbt_project.yml`.
    pub file: PathBuf,
    pub profile: Option<String>,
    pub target_path: PathBuf,
    pub clean_targets: Vec<PathBuf>,
    /// Project vars, with `--vars` applied on top.
    pub vars: BTreeMap<String, Json>,
    pub models: BTreeMap<String, Model>,
    pub seeds: BTreeMap<String, Seed>,
    /// Keyed by (source name, table name).
    pub sources: BTreeMap<(String, String), SourceTable>,
    pub macros: Vec<MacroFile>,
    pub singular_tests: Vec<SingularTest>,
    pub warnings: Vec<Warning>,
    /// What one template may cost to render.
    pub render_budget: RenderBudget,
}

/// A SQL file under `test-paths` (dbt's singular test): a Jinja query whose
/// rows are failures.
#[derive(Debug, Clone)]
pub struct SingularTest {
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    pub description: Option<String>,
    /// Declared SQL type, e.g. `varchar`, `decimal(18,2)`, `timestamp`.
    pub data_type: Option<String>,
}

/// One data test as declared (dbt `tests:` / `data_tests:` entry), unparsed:
/// `assertions` gives it meaning, so loading never fails on a test it does not know.
#[derive(Debug, Clone)]
pub struct TestDecl {
    /// The column it is declared under; None for model-level tests.
    pub column: Option<String>,
    pub spec: serde_yaml_ng::Value,
    pub file: PathBuf,
    pub line: usize,
}

impl TestDecl {
    /// The test's name as written: `unique`, `dbt_utils.expression_is_true`.
    pub fn name(&self) -> &str {
        match &self.spec {
            serde_yaml_ng::Value::String(s) => s,
            serde_yaml_ng::Value::Mapping(m) => m.keys().next().and_then(|k| k.as_str()).unwrap_or_default(),
            _ => "",
        }
    }

    pub fn is_freshness(&self) -> bool {
        match &self.spec {
            serde_yaml_ng::Value::String(s) => s == "freshness",
            serde_yaml_ng::Value::Mapping(m) => m.contains_key("freshness"),
            _ => false,
        }
    }
}

#[derive(Debug)]
pub struct Model {
    pub name: String,
    /// e.g. `models/staging/stg_accounts.sql`.
    pub path: PathBuf,
    pub sql: String,
    /// sha256 of the file, hex.
    pub checksum: String,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    /// Folder config and properties `config:`, merged (the model's own
    /// `config()` call is applied after rendering).
    pub config: ConfigLayer,
    /// The properties file that describes the model, if any.
    pub properties_file: Option<PathBuf>,
    pub tests: Vec<TestDecl>,
}

#[derive(Debug)]
pub struct Seed {
    pub name: String,
    pub path: PathBuf,
    /// Where its `column_types` are declared (file, 1-based line), if anywhere.
    pub config_at: Option<(PathBuf, usize)>,
    pub checksum: String,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    pub config: ConfigLayer,
    pub tests: Vec<TestDecl>,
}

#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source: String,
    pub name: String,
    /// Name of the table's files/folder when it differs from `name`.
    pub identifier: String,
    pub description: Option<String>,
    /// Unrendered location: the table's own (`location`, `meta.external_location`)
    /// or the source's root joined with the identifier. None: the profile's default.
    pub location: Option<String>,
    pub loaded_at_field: Option<String>,
    pub columns: Vec<Column>,
    /// No files at the location is a valid state (`allow_empty: true`).
    pub allow_empty: bool,
    /// Where it is declared, for diagnostics.
    pub file: PathBuf,
    pub line: usize,
    pub tests: Vec<TestDecl>,
}

#[derive(Debug, Clone)]
pub struct MacroFile {
    /// e.g. `macros/dedupe.sql`; also its template name.
    pub path: PathBuf,
    pub text: String,
}

impl Project {
    /// The data tests declared on a model or seed (none for an unknown name).
    pub fn tests_of(&self, name: &str) -> &[TestDecl] {
        self.models
            .get(name)
            .map(|m| m.tests.as_slice())
            .or_else(|| self.seeds.get(name).map(|s| s.tests.as_slice()))
            .unwrap_or_default()
    }

    /// Names that `ref()` can resolve: models and seeds.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().chain(self.seeds.keys()).map(String::as_str)
    }
}

/// What one template may cost to render (the project file's `render-budget`):
/// a Jinja loop of 10^10 iterations or a template producing gigabytes is an
/// error naming the model, not a hang or an aborted allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// minijinja fuel: one per instruction, plus one per 64 bytes of data made.
    pub instructions: u64,
    /// Bytes of rendered SQL per model.
    pub output_bytes: usize,
}

impl Default for RenderBudget {
    fn default() -> Self {
        RenderBudget { instructions: 20_000_000, output_bytes: 64 << 20 }
    }
}
