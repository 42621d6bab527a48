//! Raw, as-written shapes of the project's YAML files (serde only, no behaviour).
// Every dbt key is declared so files parse without warnings; later stages
// (assertions, freshness, governance) read the fields they need.
#![allow(dead_code)]
//!
//! They follow dbt's `dbt_project.yml` and `schema.yml` so a dbt user's files
//! parse unchanged; tally's own additions are marked.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// `tally_project.yml` or `dbt_project.yml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ProjectFile {
    pub name: String,
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub config_version: Option<Value>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default = "default_model_paths")]
    pub model_paths: Vec<String>,
    #[serde(default = "default_macro_paths")]
    pub macro_paths: Vec<String>,
    #[serde(default = "default_seed_paths")]
    pub seed_paths: Vec<String>,
    #[serde(default = "default_test_paths")]
    pub test_paths: Vec<String>,
    #[serde(default = "default_target_path")]
    pub target_path: String,
    #[serde(default)]
    pub clean_targets: Vec<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
    /// Folder-level model config: `{project_name: {staging: {+materialized: view}}}`.
    #[serde(default)]
    pub models: Option<Value>,
    /// Folder-level seed config, same shape as `models`.
    #[serde(default)]
    pub seeds: Option<Value>,
    /// tally: what one template may cost to render (see `RenderBudget`).
    #[serde(default)]
    pub render_budget: Option<RenderBudgetDecl>,
}

/// `render-budget: {instructions: 20000000, output-bytes: 67108864}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RenderBudgetDecl {
    pub instructions: Option<u64>,
    pub output_bytes: Option<usize>,
}

/// Keys of `dbt_project.yml` that tally recognises but does not use.
pub const DBT_PROJECT_KEYS_IGNORED: &[&str] = &[
    "require-dbt-version",
    "analysis-paths",
    "snapshot-paths",
    "docs-paths",
    "asset-paths",
    "packages-install-path",
    "on-run-start",
    "on-run-end",
    "quoting",
    "query-comment",
    "dispatch",
    "flags",
    "tests",
    "data_tests",
    "sources",
    "snapshots",
    "metrics",
    "semantic-models",
    "saved-queries",
    "exposures",
    "unit_tests",
    "restrict-access",
];

fn default_model_paths() -> Vec<String> {
    vec!["models".into()]
}
fn default_macro_paths() -> Vec<String> {
    vec!["macros".into()]
}
fn default_seed_paths() -> Vec<String> {
    vec!["seeds".into()]
}
fn default_test_paths() -> Vec<String> {
    vec!["tests".into()]
}
fn default_target_path() -> String {
    "target".into()
}

/// A properties file under `models/` (dbt's `schema.yml`).
#[derive(Debug, Default, Deserialize)]
pub struct PropertiesFile {
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub sources: Vec<SourceDecl>,
    #[serde(default)]
    pub models: Vec<ModelDecl>,
    #[serde(default)]
    pub seeds: Vec<ModelDecl>,
}

/// dbt resource kinds a properties file may hold that tally ignores.
pub const DBT_PROPERTIES_KEYS_IGNORED: &[&str] = &[
    "macros",
    "exposures",
    "metrics",
    "semantic_models",
    "saved_queries",
    "snapshots",
    "analyses",
    "groups",
    "unit_tests",
];

#[derive(Debug, Deserialize)]
pub struct SourceDecl {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub loader: Option<String>,
    #[serde(default)]
    pub loaded_at_field: Option<String>,
    #[serde(default)]
    pub freshness: Option<Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    #[serde(default)]
    pub quoting: Option<Value>,
    /// tally: an empty table (no files at its location) is a valid state for
    /// every table of the source; otherwise it is a compile error.
    #[serde(default)]
    pub allow_empty: Option<bool>,
    /// tally: folder (or URL) holding one sub-folder of Parquet files per table.
    /// Rendered with Jinja (`var`, `env_var`), e.g. `"{{ var('raw_root') }}"`.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tables: Vec<SourceTableDecl>,
}

#[derive(Debug, Deserialize)]
pub struct SourceTableDecl {
    pub name: String,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub loaded_at_field: Option<String>,
    /// `Some(Null)` when written as `freshness: null` (turns the source's off).
    #[serde(default, deserialize_with = "present")]
    pub freshness: Option<Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    #[serde(default)]
    pub quoting: Option<Value>,
    #[serde(default)]
    pub external: Option<Value>,
    /// tally: no files at the location is a valid state (see `SourceDecl`).
    #[serde(default)]
    pub allow_empty: Option<bool>,
    /// tally: the table's own folder, file or glob (overrides the source's `location`).
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub columns: Vec<ColumnDecl>,
    #[serde(default)]
    pub tests: Vec<Value>,
    #[serde(default)]
    pub data_tests: Vec<Value>,
}

/// A model's (or seed's) properties.
#[derive(Debug, Deserialize)]
pub struct ModelDecl {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
    #[serde(default)]
    pub docs: Option<Value>,
    #[serde(default)]
    pub access: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub latest_version: Option<Value>,
    #[serde(default)]
    pub versions: Option<Value>,
    #[serde(default)]
    pub constraints: Vec<Value>,
    #[serde(default)]
    pub columns: Vec<ColumnDecl>,
    #[serde(default)]
    pub tests: Vec<Value>,
    #[serde(default)]
    pub data_tests: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ColumnDecl {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub quote: Option<bool>,
    #[serde(default)]
    pub constraints: Vec<Value>,
    #[serde(default)]
    pub tests: Vec<Value>,
    #[serde(default)]
    pub data_tests: Vec<Value>,
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
}

/// A key that is present, even as `null`, deserializes to `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}
