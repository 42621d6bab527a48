//! Duplicates counted on rows that arrive ordered by their key, so that equal
//! keys are adjacent: one comparison per row with the row before, no hash
//! table. `tally build` counts a checked view's duplicates this way while it
//! stages the view, when DataFusion's plan guarantees that order (a dedupe
//! window sorted by the key, say), instead of grouping the staged rows again.
//!
//! The result is the same as the duplicates query's (see
//! [`evaluate`](super::evaluate)): rows with every key column non-null, rows
//! beyond each key's first, and the first duplicated keys with their counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{OwnedRow, Row, RowConverter, SortField};

/// The column of a duplicated-keys batch holding each key's row count.
pub const KEY_ROWS: &str = "__tally_rows";

/// Duplicates of one key, counted before the check ran.
#[derive(Debug, Clone, Default)]
pub struct KeyCounts {
    /// Rows whose key columns are all non-null.
    pub rows: u64,
    /// Rows beyond each key's first.
    pub duplicates: u64,
    /// Up to the requested number of duplicated keys: the key columns, then
    /// [`KEY_ROWS`].
    pub keys: Vec<RecordBatch>,
}

/// Counts by key columns (as declared by the checks), for
/// [`evaluate`](super::evaluate) to use instead of querying.
pub type Counted = BTreeMap<Vec<String>, KeyCounts>;

/// Counts duplicates of `columns` over batches in which equal keys are
/// adjacent (within and across batches). Fed rows in another order, it
/// undercounts: only use it where the plan guarantees the order.
pub struct KeyRuns {
    columns: Vec<String>,
    indices: Vec<usize>,
    converter: RowConverter,
    keep: usize,
    counts: KeyCounts,
    /// The key of the run in progress when the last batch ended.
    current: Option<OwnedRow>,
    /// Rows of the run in progress.
    run: u64,
    kept: Vec<(OwnedRow, u64)>,
}

impl KeyRuns {
    /// Count `columns` of batches shaped like `schema`, keeping up to `keep`
    /// duplicated keys. Fails when a column is missing or cannot be compared.
    pub fn new(schema: &Schema, columns: &[String], keep: usize) -> Result<Self, ArrowError> {
        let indices = columns.iter().map(|c| schema.index_of(c)).collect::<Result<Vec<_>, _>>()?;
        let fields = indices.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
        Ok(KeyRuns {
            columns: columns.to_vec(),
            indices,
            converter: RowConverter::new(fields)?,
            keep,
            counts: KeyCounts::default(),
            current: None,
            run: 0,
            kept: Vec::new(),
        })
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let columns: Vec<ArrayRef> = self.indices.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.converter.convert_columns(&columns)?;
        let mut prev: Option<Row<'_>> = None;
        for i in (0..batch.num_rows()).filter(|&i| columns.iter().all(|c| c.is_valid(i))) {
            let row = rows.row(i);
            self.counts.rows += 1;
            let same = match prev {
                Some(p) => p == row,
                None => self.current.as_ref().is_some_and(|c| c.row() == row),
            };
            if same {
                self.run += 1;
            } else {
                let ended = prev;
                self.end_run(|current| ended.map(|p| p.owned()).or(current));
                self.run = 1;
            }
            prev = Some(row);
        }
        if let Some(p) = prev {
            self.current = Some(p.owned());
        }
        Ok(())
    }

    /// The run in progress ended; `key` gives its key from the one of the
    /// previous batch, and is only called for a key that is kept.
    fn end_run(&mut self, key: impl FnOnce(Option<OwnedRow>) -> Option<OwnedRow>) {
        if self.run > 1 {
            self.counts.duplicates += self.run - 1;
            if self.kept.len() < self.keep
                && let Some(k) = key(self.current.clone())
            {
                self.kept.push((k, self.run));
            }
        }
        self.run = 0;
    }

    pub fn finish(mut self) -> Result<KeyCounts, ArrowError> {
        self.end_run(|current| current);
        if !self.kept.is_empty() {
            let mut arrays = self.converter.convert_rows(self.kept.iter().map(|(k, _)| k.row()))?;
            arrays.push(Arc::new(self.kept.iter().map(|&(_, n)| n as i64).collect::<Int64Array>()));
            let mut fields: Vec<Field> = self
                .columns
                .iter()
                .zip(&arrays)
                .map(|(c, a)| Field::new(c, a.data_type().clone(), true))
                .collect();
            fields.push(Field::new(KEY_ROWS, DataType::Int64, false));
            self.counts.keys = vec![RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?];
        }
        Ok(self.counts)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int32Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;

    /// Rows of (id, day), for the counters' tests.
    pub(in crate::assertions) fn batch(ids: &[Option<&str>], days: &[Option<i32>]) -> RecordBatch {
        let ids: ArrayRef = Arc::new(ids.iter().copied().collect::<StringArray>());
        let days: ArrayRef = Arc::new(days.iter().copied().collect::<Int32Array>());
        RecordBatch::try_from_iter([("id", ids), ("day", days)]).unwrap()
    }

    #[test]
    fn runs_are_counted_across_batches_and_null_keys_are_skipped() {
        // Sorted by (id, day), nulls last; the run (b, 1) spans three batches.
        let batches = [
            batch(&[Some("a"), Some("a"), Some("b")], &[Some(1), Some(2), Some(1)]),
            batch(&[Some("b")], &[Some(1)]),
            batch(&[], &[]),
            batch(
                &[Some("b"), Some("c"), Some("c"), Some("c"), None, None],
                &[Some(1), Some(5), Some(5), None, Some(1), Some(1)],
            ),
        ];
        let mut runs = KeyRuns::new(&batches[0].schema(), &["id".into(), "day".into()], 10).unwrap();
        for b in &batches {
            runs.update(b).unwrap();
        }
        let counts = runs.finish().unwrap();
        // Non-null keys: a1 a2 b1 b1 b1 c5 c5 = 7 rows, 4 distinct.
        assert_eq!((counts.rows, counts.duplicates), (7, 3));
        let keys = &counts.keys[0];
        let ids: Vec<_> = keys.column(0).as_string::<i32>().iter().flatten().collect();
        let days: Vec<_> =
            keys.column(1).as_primitive::<datafusion::arrow::datatypes::Int32Type>().values().to_vec();
        let n = keys.column_by_name(KEY_ROWS).unwrap().as_primitive::<Int64Type>().values().to_vec();
        assert_eq!((ids, days, n), (vec!["b", "c"], vec![1, 5], vec![3, 2]));
    }

    #[test]
    fn only_the_first_duplicated_keys_are_kept() {
        let b = batch(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c")], &[Some(1); 5]);
        let mut runs = KeyRuns::new(&b.schema(), &["id".into()], 1).unwrap();
        runs.update(&b).unwrap();
        let counts = runs.finish().unwrap();
        assert_eq!((counts.rows, counts.duplicates, counts.keys[0].num_rows()), (5, 2, 1));
        assert_eq!(counts.keys[0].column(0).as_string::<i32>().value(0), "a");
    }

    #[test]
    fn no_duplicates_keeps_no_keys() {
        let b = batch(&[Some("a"), Some("b")], &[Some(1), Some(1)]);
        let mut runs = KeyRuns::new(&b.schema(), &["id".into()], 10).unwrap();
        runs.update(&b).unwrap();
        let counts = runs.finish().unwrap();
        assert_eq!((counts.rows, counts.duplicates, counts.keys.len()), (2, 0, 0));
        assert!(KeyRuns::new(&b.schema(), &["nope".into()], 10).is_err());
    }
}
