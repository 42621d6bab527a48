//! Duplicates counted on rows in any order, without a hash table of key
//! values: each row's key is hashed to 64 bits as it arrives, the hashes are
//! sorted, and only the rows whose hash occurs more than once (the
//! duplicates, plus the rare rows whose hashes merely collide) are compared
//! by value: sorted by their key and counted with [`KeyRuns`]. Equal keys
//! always hash alike, so no duplicate is missed, and a collision costs one
//! more row to compare, never a wrong count.
//!
//! Most keys of a relation are unique, so this does a fraction of the work
//! of grouping every row by its key (the aggregation it replaced spent most
//! of its time growing a table of millions of distinct keys). It keeps the
//! key columns until the end: as much memory as that aggregation's groups.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{and, concat_batches, filter_record_batch, is_not_null, take_record_batch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::HashSet;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use super::key_runs::{KeyCounts, KeyRuns};

/// The key columns and key hashes of one stream's rows (one partition of a
/// scan, say); [`KeyHashes::finish`] counts several together.
pub struct KeyHashes {
    columns: Vec<String>,
    indices: Vec<usize>,
    /// The key columns' schema.
    schema: SchemaRef,
    /// The key columns of the rows counted: those whose key parts are all non-null.
    keys: Vec<RecordBatch>,
    /// Each of those rows' key hash, in the same order.
    hashes: Vec<u64>,
    /// Rows left out because a key part is null.
    null_keys: u64,
    /// Bits of the hash kept: all of them, except in tests that force collisions.
    mask: u64,
}

impl KeyHashes {
    /// Count `columns` of batches shaped like `schema`. Fails when a column is missing.
    pub fn new(schema: &Schema, columns: &[String]) -> Result<Self, ArrowError> {
        let indices = columns.iter().map(|c| schema.index_of(c)).collect::<Result<Vec<_>, _>>()?;
        Ok(KeyHashes {
            columns: columns.to_vec(),
            schema: Arc::new(schema.project(&indices)?),
            indices,
            keys: Vec::new(),
            hashes: Vec::new(),
            null_keys: 0,
            mask: u64::MAX,
        })
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let mut keys = batch.project(&self.indices)?;
        if keys.columns().iter().any(|c| c.null_count() > 0) {
            let mut valid = is_not_null(keys.column(0))?;
            for c in &keys.columns()[1..] {
                valid = and(&valid, &is_not_null(c)?)?;
            }
            keys = filter_record_batch(&keys, &valid)?;
            self.null_keys += (batch.num_rows() - keys.num_rows()) as u64;
        }
        if keys.num_rows() == 0 {
            return Ok(());
        }
        let start = self.hashes.len();
        self.hashes.resize(start + keys.num_rows(), 0);
        let hashes = &mut self.hashes[start..];
        create_hashes(keys.columns(), &RandomState::with_seed(0), hashes)
            .map_err(|e| ArrowError::ComputeError(e.to_string()))?;
        if self.mask != u64::MAX {
            hashes.iter_mut().for_each(|h| *h &= self.mask);
        }
        self.keys.push(keys);
        Ok(())
    }

    /// Rows seen so far with a null key part (not counted as keys).
    pub fn null_keys(&self) -> u64 {
        self.null_keys
    }

    /// The counts of all `parts` together, keeping up to `keep` duplicated
    /// keys: the first in key order. Every part must count the same columns.
    pub fn finish(parts: Vec<KeyHashes>, keep: usize) -> Result<KeyCounts, ArrowError> {
        let Some(first) = parts.first() else { return Ok(KeyCounts::default()) };
        let mut sorted: Vec<u64> = parts.iter().flat_map(|p| p.hashes.iter().copied()).collect();
        let rows = sorted.len() as u64;
        sorted.sort_unstable();
        let repeated = Repeated::new(sorted.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect());
        drop(sorted);
        let mut candidates = Vec::new();
        if !repeated.set.is_empty() {
            for part in &parts {
                let mut hashes = part.hashes.as_slice();
                for batch in &part.keys {
                    let (own, rest) = hashes.split_at(batch.num_rows());
                    hashes = rest;
                    let take: UInt32Array =
                        (0u32..).zip(own).filter(|(_, h)| repeated.contains(**h)).map(|(i, _)| i).collect();
                    if !take.is_empty() {
                        candidates.push(take_record_batch(batch, &take)?);
                    }
                }
            }
        }
        let mut runs = KeyRuns::new(&first.schema, &first.columns, keep)?;
        if !candidates.is_empty() {
            runs.update(&sorted_by_key(&concat_batches(&first.schema, &candidates)?)?)?;
        }
        let mut counts = runs.finish()?;
        counts.rows = rows;
        Ok(counts)
    }
}

/// The hashes that occur more than once, behind a bitmap of their leading
/// bits: most rows' hashes are not among them, and one bit (of a bitmap small
/// enough to stay in cache) says so without looking the hash up in the set.
/// A set bit only sends the hash on to the set, so the answer is exact.
struct Repeated {
    set: HashSet<u64>,
    bits: Vec<u64>,
    /// The bitmap's index is the hash shifted right by this.
    shift: u32,
}

impl Repeated {
    fn new(set: HashSet<u64>) -> Self {
        // About 16 bits per repeated hash: one row in 16 or fewer gets past it.
        let index_bits = (set.len().max(4) * 16).next_power_of_two().trailing_zeros();
        let shift = 64 - index_bits;
        let mut bits = vec![0u64; 1 << (index_bits - 6)];
        for h in &set {
            let i = h >> shift;
            bits[(i >> 6) as usize] |= 1 << (i & 63);
        }
        Repeated { set, bits, shift }
    }

    fn contains(&self, h: u64) -> bool {
        let i = h >> self.shift;
        self.bits[(i >> 6) as usize] & (1 << (i & 63)) != 0 && self.set.contains(&h)
    }
}

/// `batch`'s rows ordered by all its columns (any type the row format takes).
fn sorted_by_key(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let fields = batch.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let rows = RowConverter::new(fields)?.convert_columns(batch.columns())?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_unstable_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    take_record_batch(batch, &UInt32Array::from(order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int32Type, Int64Type};
    use std::collections::BTreeMap;

    use super::super::key_runs::KEY_ROWS;
    use super::super::key_runs::tests::batch;

    fn key() -> Vec<String> {
        vec!["id".into(), "day".into()]
    }

    /// Counts of `parts` (each a list of batches) with `mask` bits of hash,
    /// and the rows with a null key part.
    fn count_with_nulls(parts: &[Vec<RecordBatch>], mask: u64, keep: usize) -> (KeyCounts, u64) {
        let parts = parts
            .iter()
            .map(|batches| {
                let mut p = KeyHashes::new(&batches[0].schema(), &key()).unwrap();
                p.mask = mask;
                batches.iter().for_each(|b| p.update(b).unwrap());
                p
            })
            .collect::<Vec<_>>();
        let nulls = parts.iter().map(KeyHashes::null_keys).sum();
        (KeyHashes::finish(parts, keep).unwrap(), nulls)
    }

    fn count(parts: &[Vec<RecordBatch>], mask: u64, keep: usize) -> KeyCounts {
        count_with_nulls(parts, mask, keep).0
    }

    fn kept(counts: &KeyCounts) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for b in &counts.keys {
            let (ids, days) = (b.column(0).as_string::<i32>(), b.column(1).as_primitive::<Int32Type>());
            let n = b.column_by_name(KEY_ROWS).unwrap().as_primitive::<Int64Type>();
            out.extend((0..b.num_rows()).map(|i| (ids.value(i).to_string(), days.value(i), n.value(i))));
        }
        out
    }

    #[test]
    fn duplicates_across_batches_and_parts_are_counted_by_value() {
        // (b,1) three times over two parts, (a,1) twice in one batch, (a,2)
        // once; rows with a null key part are not checked: 6 rows, 3 beyond
        // their key's first.
        let one = batch(&[Some("b"), Some("a"), None, Some("a")], &[Some(1), Some(1), Some(1), Some(1)]);
        let two = batch(&[Some("b"), Some("a")], &[Some(1), None]);
        let three = batch(&[Some("b"), Some("a")], &[Some(1), Some(2)]);
        let (counts, nulls) = count_with_nulls(&[vec![one, two], vec![three]], u64::MAX, 10);
        assert_eq!((counts.rows, counts.duplicates, nulls), (6, 3, 2));
        assert_eq!(kept(&counts), [("a".into(), 1, 2), ("b".into(), 1, 3)]);
    }

    #[test]
    fn colliding_hashes_are_told_apart_by_value() {
        // 200 distinct keys, 20 of them twice and 5 a third time, hashed to
        // two bits only: every hash repeats, so every row is compared, and
        // the counts must still match counting by value.
        let ids: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let mut rows: Vec<(&str, i32)> = ids.iter().map(|s| (s.as_str(), 7)).collect();
        rows.extend(ids.iter().take(20).map(|s| (s.as_str(), 7)));
        rows.extend(ids.iter().skip(100).take(5).map(|s| (s.as_str(), 7)));
        let by_value = rows.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(*r).or_insert(0i64) += 1;
            m
        });
        let parts: Vec<Vec<RecordBatch>> = rows
            .chunks(45)
            .map(|c| {
                vec![batch(
                    &c.iter().map(|r| Some(r.0)).collect::<Vec<_>>(),
                    &c.iter().map(|r| Some(r.1)).collect::<Vec<_>>(),
                )]
            })
            .collect();
        for mask in [u64::MAX, 0b11] {
            let counts = count(&parts, mask, 3);
            assert_eq!((counts.rows, counts.duplicates), (225, 25), "mask {mask:b}");
            // The first three duplicated keys in key order, with their counts.
            let expected: Vec<(String, i32, i64)> = by_value
                .iter()
                .filter(|(_, n)| **n > 1)
                .take(3)
                .map(|((id, day), n)| (id.to_string(), *day, *n))
                .collect();
            assert_eq!(kept(&counts), expected, "mask {mask:b}");
        }
    }

    #[test]
    fn the_bitmap_in_front_of_the_repeated_hashes_never_changes_the_answer() {
        // Spread hashes, and hashes whose leading bits are all zero (every
        // one lands on the same bit): members are found, others are not.
        let spread = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for hash in [spread as fn(u64) -> u64, |i| i] {
            let members: HashSet<u64> = (0..1000).map(|i| hash(2 * i)).collect();
            let repeated = Repeated::new(members.clone());
            assert!((0..2000).all(|i| repeated.contains(hash(i)) == members.contains(&hash(i))));
        }
        // No repeated hash at all: nothing gets through.
        assert!(!Repeated::new(HashSet::default()).contains(0));
    }

    #[test]
    fn nothing_counted_gives_zeros() {
        let counts = count(&[vec![batch(&[None], &[Some(1)])]], u64::MAX, 10);
        assert_eq!((counts.rows, counts.duplicates, counts.keys.len()), (0, 0, 0));
        assert_eq!(KeyHashes::finish(Vec::new(), 10).unwrap().rows, 0);
    }
}
