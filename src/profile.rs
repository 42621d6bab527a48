//! Targets: where the warehouse lives and which engine runs the models.
//!
//! `profiles/profiles.yml` (dbt's shape):
//! ```yaml
//! tally:                 # the project's `profile:` (default: the project name, then `tally`)
//!   target: local
//!   outputs:
//!     local:
//!       type: datafusion
//!       warehouse: warehouse            # a folder under the project, or a URL
//!       threads: 4
//! ```
//! With no profile file at all, the embedded default applies: a local
//! `warehouse/` folder in the project, no server, no credentials.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use url::Url;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::error::{Error, Result};
use crate::project::{Project, yaml};
use crate::storage::StorageOptions;

pub const PROFILES_FILE: &str = "profiles/profiles.yml";

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub profile_name: String,
    pub engine: String,
    /// Root URL under which every model's table is stored (always ends with `/`).
    pub warehouse: Url,
    pub threads: Option<usize>,
    /// object_store options for the warehouse's and sources' stores (credentials: never printed).
    pub storage: StorageOptions,
    /// Local folders outside the project that sources may read (canonical):
    /// the target's `allowed_roots` and `--allow-root`.
    pub allowed_roots: Vec<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
struct ProfileDecl {
    target: Option<String>,
    #[serde(default)]
    outputs: BTreeMap<String, OutputDecl>,
}

#[derive(Debug, Deserialize)]
struct OutputDecl {
    #[serde(rename = "type", default = "default_engine")]
    engine: String,
    #[serde(default = "default_warehouse")]
    warehouse: String,
    #[serde(default)]
    threads: Option<usize>,
    /// e.g. aws_endpoint, aws_region, aws_allow_http, aws_access_key_id: "${AWS_ACCESS_KEY_ID}".
    #[serde(default)]
    storage_options: BTreeMap<String, String>,
    /// Local folders outside the project that sources may read (relative to the project, or absolute).
    #[serde(default)]
    allowed_roots: Vec<String>,
}

fn default_engine() -> String {
    "datafusion".into()
}
fn default_warehouse() -> String {
    "warehouse".into()
}

/// Resolve the target to use: `--target`, else the profile's `target`, else the embedded default.
pub fn resolve(project: &Project, target: Option<&str>) -> Result<Target> {
    let file = Path::new(PROFILES_FILE);
    let path = project.dir.join(file);
    if !path.is_file() {
        if let Some(t) = target.filter(|t| *t != "local") {
            return Err(Diagnostic::error(format!(
                "--target {t}: the project has no {PROFILES_FILE}; only the embedded `local` target exists"
            ))
            .with_help(format!("add {PROFILES_FILE} with an output named `{t}`"))
            .into());
        }
        return Ok(Target {
            name: "local".into(),
            profile_name: "tally".into(),
            engine: default_engine(),
            warehouse: warehouse_url(&project.dir, &default_warehouse(), file)?,
            threads: None,
            storage: StorageOptions::default(),
            allowed_roots: Vec::new(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", file, e))?;
    let mut warnings = Vec::new();
    let profiles: BTreeMap<String, ProfileDecl> = yaml::parse(file, &text, &[], &mut warnings)?;
    let wanted = project.profile.clone().unwrap_or_else(|| project.name.clone());
    let (profile_name, profile) = profiles
        .get_key_value(&wanted)
        .or_else(|| profiles.get_key_value("tally"))
        .or_else(|| if profiles.len() == 1 { profiles.iter().next() } else { None })
        .ok_or_else(|| {
            Diagnostic::error(format!("{PROFILES_FILE} has no profile `{wanted}`")).in_file(file).with_help(
                did_you_mean(&wanted, profiles.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("add a top-level `{wanted}:` entry")),
            )
        })?;
    let name =
        target.map(str::to_string).or_else(|| profile.target.clone()).unwrap_or_else(|| "local".into());
    let output = profile.outputs.get(&name).ok_or_else(|| {
        Diagnostic::error(format!("profile `{profile_name}` has no target `{name}`"))
            .at(
                file,
                yaml::line_of_key(&text, &format!("{profile_name}.target"))
                    .max(yaml::line_of_key(&text, profile_name)),
                0,
            )
            .with_help(did_you_mean(&name, profile.outputs.keys().map(String::as_str)).unwrap_or_else(|| {
                format!("targets: {}", profile.outputs.keys().cloned().collect::<Vec<_>>().join(", "))
            }))
    })?;
    if output.engine != "datafusion" {
        return Err(Diagnostic::error(format!(
            "target `{name}`: engine type `{}` is not supported; use `datafusion`",
            output.engine
        ))
        .at(file, yaml::line_of_key(&text, &format!("{profile_name}.outputs.{name}.type")), 0)
        .into());
    }
    let at = |key: &str| (file, yaml::line_of_key(&text, &format!("{profile_name}.outputs.{name}.{key}")));
    if output.threads == Some(0) {
        return Err(Diagnostic::error(format!("target `{name}`: `threads: 0` would run nothing"))
            .at(file, at("threads").1, 0)
            .with_help("set threads to 1 or more, or leave it out to use every core")
            .into());
    }
    let warehouse = expand_env(&output.warehouse, at("warehouse"), "warehouse")?;
    let storage = output
        .storage_options
        .iter()
        .map(|(k, v)| Ok((k.clone(), expand_env(v, at(&format!("storage_options.{k}")), k)?)))
        .collect::<Result<_>>()?;
    let allowed_roots = output
        .allowed_roots
        .iter()
        .map(|r| {
            let expanded = expand_env(r, at("allowed_roots"), "allowed_roots")?;
            allowed_root(&project.dir, &expanded).map_err(|e| {
                Diagnostic::error(format!("`allowed_roots`: {expanded}: {e}"))
                    .at(file, at("allowed_roots").1, 0)
                    .into()
            })
        })
        .collect::<Result<_>>()?;
    Ok(Target {
        warehouse: warehouse_url(&project.dir, &warehouse, file)?,
        name,
        profile_name: profile_name.clone(),
        engine: output.engine.clone(),
        threads: output.threads,
        storage: StorageOptions(storage),
        allowed_roots,
    })
}

/// `${VAR}` and dbt's `{{ env_var('VAR') }}` / `{{ env_var('VAR', 'default') }}` in
/// profile values come from the environment (so credentials never live in files).
/// A variable that is not set and has no default is an error naming it and
/// the line, as dbt's `env_var` is: an empty credential or a warehouse at
/// `/wh` instead of `${ROOT}/wh` is never what was meant. `${VAR:-default}`
/// gives a default (an empty one allowed: `${VAR:-}`).
fn expand_env(s: &str, (file, line): (&Path, usize), key: &str) -> Result<String> {
    let located = |message: String| Diagnostic::error(format!("`{key}`: {message}")).at(file, line, 0);
    let rendered = crate::render::render_env(s).map_err(|e| {
        located(e.to_string())
            .with_help("set the variable, or give a default: {{ env_var('VAR', 'default') }}")
    })?;
    expand_dollar(&rendered, |name| std::env::var(name).ok()).map_err(|e| {
        located(e.to_string()).with_help("set the variable, or give a default: ${VAR:-default} (an empty default, ${VAR:-}, is allowed)").into()
    })
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum DollarError {
    #[error("the environment variable `{0}` is not set and `${{{0}}}` has no default")]
    Unset(String),
    #[error("`${{` is not closed by `}}`")]
    Unclosed,
}

fn expand_dollar(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, DollarError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let j = rest[i + 2..].find('}').ok_or(DollarError::Unclosed)?;
        let inner = &rest[i + 2..i + 2 + j];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(DollarError::Unset(name.to_string())),
        }
        rest = &rest[i + 3 + j..];
    }
    out.push_str(rest);
    Ok(out)
}

/// An allowed root as a canonical folder (it must exist).
pub fn allowed_root(project_dir: &Path, value: &str) -> std::io::Result<std::path::PathBuf> {
    std::fs::canonicalize(project_dir.join(value))
}

/// A URL (`file://`, `memory://`, `s3://`...) or a path relative to the project.
pub fn warehouse_url(project_dir: &Path, value: &str, file: &Path) -> Result<Url> {
    let url = if value.contains("://") {
        Url::parse(value).map_err(|e| {
            Diagnostic::error(format!("warehouse `{value}` is not a valid URL: {e}")).in_file(file)
        })?
    } else {
        let p = project_dir.join(value);
        Url::from_directory_path(&p).map_err(|_| {
            Diagnostic::error(format!("warehouse path {} is not absolute", p.display())).in_file(file)
        })?
    };
    Ok(with_trailing_slash(url))
}

pub fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    url
}

/// A location that is a URL, or a path (relative to the project) made into a `file://` URL.
pub fn location_url(project_dir: &Path, value: &str) -> Option<Url> {
    if value.contains("://") {
        Url::parse(value).ok()
    } else {
        let p = project_dir.join(value);
        if value.ends_with('/') || p.is_dir() {
            Url::from_directory_path(p).ok()
        } else {
            Url::from_file_path(p).ok()
        }
    }
}

impl Target {
    /// Where a stored node lives: `<warehouse>/<name>/`.
    pub fn table_url(&self, name: &str) -> Url {
        let mut url = self.warehouse.clone();
        url.set_path(&format!("{}{}/", self.warehouse.path(), name));
        url
    }

    /// Where a run keeps what its assertions found: `<warehouse>/_audit/<run_id>/`.
    pub fn audit_url(&self, run_id: &str) -> Url {
        self.table_url(&format!("_audit/{run_id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_variables_need_a_value_or_a_default() {
        let env = |n: &str| (n == "ROOT").then(|| "/data".to_string());
        assert_eq!(expand_dollar("${ROOT}/wh", env).unwrap(), "/data/wh");
        assert_eq!(expand_dollar("${UNSET}/wh", env), Err(DollarError::Unset("UNSET".into())));
        assert_eq!(expand_dollar("${UNSET:-}", env).unwrap(), "");
        assert_eq!(expand_dollar("${UNSET:-/tmp}/wh", env).unwrap(), "/tmp/wh");
        assert_eq!(expand_dollar("${ROOT:-/tmp}", env).unwrap(), "/data");
        assert_eq!(expand_dollar("${ROOT", env), Err(DollarError::Unclosed));
        assert_eq!(expand_dollar("plain", env).unwrap(), "plain");
    }
}
