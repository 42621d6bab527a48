//! Node configuration: how a model or seed is materialized, its tags, and the
//! rest of its `config`, resolved from three layers, lowest first:
//!
//! ```text
//! project file folder config  (models: {proj: {staging: {+materialized: view}}})
//!   < properties YAML `config:` (models: [{name: x, config: {...}}])
//!     < the model's own `{{ config(...) }}`
//! ```
//! `tags` accumulate across layers and `meta` merges key by key (as in dbt);
//! every other key is overridden by the higher layer.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value as Json;

/// How a node's result is stored.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Materialization {
    /// Nothing is written; the SQL is inlined into every dependent plan.
    View,
    /// Written as a Delta Lake table, replaced atomically on each run.
    Table,
    /// Never stored nor queryable on its own: inlined where it is referenced.
    Ephemeral,
    /// Declared incremental. Until incremental strategies land, each run rebuilds
    /// the full table (what dbt does on a first run or `--full-refresh`), and
    /// `is_incremental()` is false: correct results, not yet the cheaper path.
    Incremental,
    /// A CSV file under `seeds/`, loaded into a Delta table.
    Seed,
}

impl Materialization {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "view" => Self::View,
            "table" => Self::Table,
            "ephemeral" => Self::Ephemeral,
            "incremental" => Self::Incremental,
            "seed" => Self::Seed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Table => "table",
            Self::Ephemeral => "ephemeral",
            Self::Incremental => "incremental",
            Self::Seed => "seed",
        }
    }

    /// Whether running the node writes data to the warehouse.
    pub fn is_stored(self) -> bool {
        matches!(self, Self::Table | Self::Incremental | Self::Seed)
    }
}

/// One layer of raw config keys (without the `+` prefix).
pub type ConfigLayer = BTreeMap<String, Json>;

/// Config keys that may be written without `+` in folder config.
const KNOWN_CONFIG_KEYS: &[&str] = &[
    "materialized",
    "tags",
    "enabled",
    "meta",
    "alias",
    "schema",
    "database",
    "docs",
    "persist_docs",
    "full_refresh",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "column_types",
    "delimiter",
    "quote_columns",
    "pre-hook",
    "post-hook",
    "grants",
    "contract",
    "severity",
    "description",
    "access",
    "group",
];

/// The folder-config layers that apply to a file in `segments` (its folders below
/// the model path), from the project-wide level down to its own folder.
pub fn folder_layers(
    tree: Option<&serde_yaml_ng::Value>,
    project: &str,
    segments: &[String],
) -> Vec<ConfigLayer> {
    let Some(mut node) = tree else { return Vec::new() };
    // dbt nests folder config under the project (or package) name; accept both.
    if let Some(inner) = node.get(project) {
        node = inner;
    }
    let mut layers = vec![configs_at(node)];
    for seg in segments {
        match node.get(seg.as_str()) {
            Some(child) if child.is_mapping() => {
                node = child;
                layers.push(configs_at(node));
            }
            _ => break,
        }
    }
    layers
}

fn configs_at(node: &serde_yaml_ng::Value) -> ConfigLayer {
    let mut layer = ConfigLayer::new();
    let Some(map) = node.as_mapping() else { return layer };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        let key = match k.strip_prefix('+') {
            Some(stripped) => stripped,
            None if KNOWN_CONFIG_KEYS.contains(&k) && !v.is_mapping() => k,
            None if k == "meta" => k,
            None => continue, // a sub-folder
        };
        if let Ok(json) = serde_json::to_value(v) {
            layer.insert(key.to_string(), json);
        }
    }
    layer
}

/// Convert a YAML `config:` mapping to a layer.
pub fn yaml_layer(map: &BTreeMap<String, serde_yaml_ng::Value>) -> ConfigLayer {
    map.iter()
        .filter_map(|(k, v)| Some((k.trim_start_matches('+').to_string(), serde_json::to_value(v).ok()?)))
        .collect()
}

/// Merge layers, lowest first.
pub fn merge(layers: impl IntoIterator<Item = ConfigLayer>) -> ConfigLayer {
    let mut out = ConfigLayer::new();
    for layer in layers {
        for (k, v) in layer {
            match (k.as_str(), out.get_mut(&k)) {
                ("tags", Some(existing)) => {
                    let mut tags = tags_of(existing);
                    tags.extend(tags_of(&v));
                    *existing = Json::from(tags.into_iter().collect::<Vec<_>>());
                }
                ("meta", Some(Json::Object(existing))) => {
                    if let Json::Object(new) = v {
                        existing.extend(new);
                    }
                }
                _ => {
                    out.insert(k, v);
                }
            }
        }
    }
    out
}

/// `tags` may be a string or a list of strings.
pub fn tags_of(v: &Json) -> BTreeSet<String> {
    match v {
        Json::String(s) => BTreeSet::from([s.clone()]),
        Json::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_config_nests_under_project_and_folders() {
        let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "proj:\n  +materialized: view\n  +tags: [a]\n  marts:\n    +materialized: table\n    tags: b\n",
        )
        .unwrap();
        let layers = folder_layers(Some(&tree), "proj", &["marts".to_string()]);
        let merged = merge(layers);
        assert_eq!(merged["materialized"], "table");
        assert_eq!(tags_of(&merged["tags"]), BTreeSet::from(["a".into(), "b".into()]));
        let staging = merge(folder_layers(Some(&tree), "proj", &["staging".to_string()]));
        assert_eq!(staging["materialized"], "view");
    }
}
