//! `unique`, `duplicates: {columns: [a, b], max_ratio}` (and dbt_utils'
//! `unique_combination_of_columns`): rows beyond the first of each non-null
//! key. Counted in one scan of the key columns by key hash (see
//! [`KeyHashes`]), which also yields the duplicated keys that the failing
//! rows are then read by, and the rows with a null key part.

use datafusion::arrow::array::RecordBatch;
use futures::StreamExt;

use super::key_hashes::KeyHashes;
use super::kind::{Args, CheckKind, Registered, Scope};
use super::verdict::{CheckError, Judged, Measure, Rules, share};
use crate::diagnostic::Diagnostic;
use crate::plan::Engine;
use crate::render::quote_ident;

#[derive(Debug, Clone, PartialEq)]
pub struct Duplicates {
    /// The key.
    pub columns: Vec<String>,
    /// Duplicated rows / non-null keys must be at most this; 0 means dbt's count rules.
    pub max_ratio: f64,
}

impl Registered for Duplicates {
    const NAMES: &'static [&'static str] = &["unique", "duplicates", "unique_combination_of_columns"];

    fn parse(args: &Args, test: &str) -> Result<Self, Diagnostic> {
        Ok(match test {
            "unique" => Duplicates { columns: vec![args.need_column()?], max_ratio: 0.0 },
            _ => Duplicates {
                columns: args.columns_or_column(&["columns", "combination_of_columns"])?,
                max_ratio: args.float("max_ratio").unwrap_or(0.0),
            },
        })
    }

    fn describe(m: &Measure) -> String {
        m.ratio_or_rows()
    }
}

impl CheckKind for Duplicates {
    fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    fn failing_rows(&self, at: &Scope) -> Option<String> {
        let keys: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        let list = keys.join(", ");
        let not_null = keys.iter().map(|c| format!("{c} is not null")).collect::<Vec<_>>().join(" and ");
        let on = keys.iter().map(|c| format!("t.{c} = d.{c}")).collect::<Vec<_>>().join(" and ");
        let (r, f) = (at.relation, at.where_sql());
        Some(format!(
            "select t.* from {r} t join (select {list} from {r} where {f} and {not_null} group by {list} having count(*) > 1) d on {on} where {f}"
        ))
    }

    fn judge(&self, rules: &Rules, rows_checked: u64, failing: u64) -> Judged {
        let share = share(rows_checked, failing);
        match self.max_ratio > 0.0 {
            true => (rules.on_bound(share > self.max_ratio), share, format!("<= {}", self.max_ratio)),
            false => (rules.on_count(failing), share, rules.count_threshold()),
        }
    }
}

/// What a scan of the key found.
pub struct KeyScan {
    /// (rows with a non-null key, rows beyond each key's first).
    pub counts: (u64, u64),
    /// Up to `keep` duplicated keys, each with its row count.
    pub keys: Vec<RecordBatch>,
    /// Without a `where`: the rows with a null key part.
    pub null_keys: Option<u64>,
}

impl Duplicates {
    /// Rows per non-null key, counted by [`KeyHashes`] on every partition of
    /// a scan of the key columns at once.
    pub async fn scan(&self, engine: &Engine, at: &Scope<'_>, keep: usize) -> Result<KeyScan, CheckError> {
        let cols = self.columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let sql = format!("select {cols} from {} where {}", at.relation, at.where_sql());
        let mut parts = Vec::new();
        let (schema, streams) = engine.sql_partitioned(&sql).await?;
        for mut stream in streams {
            let mut part = KeyHashes::new(&schema, &self.columns)?;
            parts.push(tokio::spawn(async move {
                while let Some(batch) = stream.next().await {
                    part.update(&batch?)?;
                }
                Ok::<_, CheckError>(part)
            }));
        }
        let parts = futures::future::try_join_all(parts)
            .await
            .map_err(|e| CheckError(e.to_string()))?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let null_keys = at.filter.is_none().then(|| parts.iter().map(KeyHashes::null_keys).sum());
        let counts = KeyHashes::finish(parts, keep)?;
        Ok(KeyScan { counts: (counts.rows, counts.duplicates), keys: counts.keys, null_keys })
    }
}
