//! Run assertions: one aggregate scan per relation for every check that can
//! be written as `count(*) FILTER (WHERE ...)`, one query each for the rest.
//! If the fused query fails (say, a bad `expression`), each of its checks is
//! retried alone so the failure lands on the check that caused it.
//!
//! Duplicates are one scan of the key columns, counted by key hash (see
//! [`Duplicates::scan`]), which also yields the duplicated keys: a failed
//! check's rows are then found by those keys (see
//! [`failing::collect`](super::failing::collect)) instead of by grouping the
//! whole relation a second time. That scan reads every row of the key, so
//! it also answers a completeness check of the same columns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;

use super::check::{Assertion, Outcome};
use super::key_runs::Counted;
use super::kinds::{Duplicates, Kind};
use super::verdict::CheckError;
use crate::plan::Engine;

/// An assertion's outcome, and what it found that its failing rows are read by.
pub struct Evaluated {
    pub outcome: Outcome,
    /// Duplicates: up to [`Assertion::rows_kept`] duplicated keys (the
    /// checked columns, then each key's row count); empty otherwise.
    pub duplicated_keys: Vec<RecordBatch>,
}

/// Evaluate `assertions` (in any order); results come back in the same order.
/// Freshness is measured against `as_of_us` (microseconds since the epoch, UTC).
/// Duplicates already `counted` (by key columns) are not queried again.
pub async fn evaluate(
    engine: &Engine,
    assertions: &[Assertion],
    as_of_us: i64,
    counted: &Counted,
) -> Vec<Evaluated> {
    let mut by_relation: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in assertions.iter().enumerate() {
        by_relation.entry(a.relation_sql.as_str()).or_default().push(i);
    }
    let mut counts: Vec<Result<(u64, u64), CheckError>> =
        vec![Err(CheckError(String::new())); assertions.len()];
    let mut keys: Vec<Vec<RecordBatch>> = vec![Vec::new(); assertions.len()];
    for (relation, idx) in by_relation {
        let by_key = completeness_by_key(assertions, &idx, counted);
        let paired: Vec<usize> = by_key.values().flatten().copied().collect();
        let fused: Vec<usize> =
            idx.iter().copied().filter(|&i| fusable(&assertions[i]) && !paired.contains(&i)).collect();
        let start = Instant::now();
        match fused_counts(engine, relation, &fused.iter().map(|&i| &assertions[i]).collect::<Vec<_>>()).await
        {
            Ok(c) => {
                for (&i, v) in fused.iter().zip(c) {
                    counts[i] = Ok(v);
                }
            }
            Err(_) => {
                for &i in &fused {
                    counts[i] = fused_counts(engine, relation, &[&assertions[i]]).await.map(|v| v[0]);
                }
            }
        }
        tracing::debug!(
            relation,
            checks = fused.len(),
            seconds = start.elapsed().as_secs_f64(),
            "fused checks"
        );
        // Freshness is measured below, once, against as_of.
        let own = |a: &Assertion| !fusable(a) && !matches!(a.kind, Kind::Freshness(_));
        for &i in idx.iter().filter(|&&i| own(&assertions[i])) {
            let start = Instant::now();
            let found = own_query(engine, &assertions[i], counted).await;
            tracing::debug!(relation, check = %assertions[i].name, seconds = start.elapsed().as_secs_f64(), "check");
            let null_keys = found.as_ref().ok().and_then(|f| f.null_keys);
            counts[i] = found.map(|f| {
                keys[i] = f.keys;
                f.counts
            });
            for &j in by_key.get(&i).into_iter().flatten() {
                counts[j] = match (&counts[i], null_keys) {
                    (Ok((rows, _)), Some(nulls)) => Ok((rows + nulls, nulls)),
                    _ => fused_counts(engine, relation, &[&assertions[j]]).await.map(|v| v[0]),
                };
            }
        }
    }
    let mut out = Vec::with_capacity(assertions.len());
    for ((a, c), duplicated_keys) in assertions.iter().zip(counts).zip(keys) {
        let outcome = match &a.kind {
            Kind::Freshness(f) => {
                let start = Instant::now();
                let row = single_row_signed(engine, &f.newest_sql(&a.scope())).await;
                tracing::debug!(relation = %a.relation_sql, check = %a.name, seconds = start.elapsed().as_secs_f64(), "check");
                a.judge_freshness(f, row, as_of_us)
            }
            _ => a.outcome(c),
        };
        out.push(Evaluated { outcome, duplicated_keys });
    }
    out
}

/// The completeness checks of exactly the key of a duplicates check that is
/// queried here (not already counted), both on every row: the duplicates
/// scan reads every row of those columns and counts those with a null key
/// part, so one scan answers both. Duplicates check -> its completeness checks.
pub(crate) fn completeness_by_key(
    assertions: &[Assertion],
    idx: &[usize],
    counted: &Counted,
) -> BTreeMap<usize, Vec<usize>> {
    let set = |columns: &[String]| columns.iter().cloned().collect::<BTreeSet<_>>();
    let mut by_key: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &j in idx.iter().filter(|&&j| assertions[j].filter.is_none()) {
        let Kind::Completeness(c) = &assertions[j].kind else { continue };
        let columns = set(&c.columns);
        let scans_key = |i: &&usize| match &assertions[**i].kind {
            Kind::Duplicates(d) => {
                assertions[**i].filter.is_none()
                    && !counted.contains_key(&d.columns)
                    && set(&d.columns) == columns
            }
            _ => false,
        };
        if let Some(&i) = idx.iter().find(scans_key) {
            by_key.entry(i).or_default().push(j);
        }
    }
    by_key
}

fn fusable(a: &Assertion) -> bool {
    a.kind.check().fused_failing(&a.scope()).is_some()
}

/// (rows checked, failing rows) of each assertion, from one aggregate query.
async fn fused_counts(
    engine: &Engine,
    relation: &str,
    assertions: &[&Assertion],
) -> Result<Vec<(u64, u64)>, CheckError> {
    if assertions.is_empty() {
        return Ok(Vec::new());
    }
    let row = single_row(engine, &fused_sql(relation, assertions)).await?;
    Ok((0..assertions.len()).map(|i| (row[2 * i], row[2 * i + 1])).collect())
}

/// The aggregate query of [`fused_counts`]: `c<i>`, `f<i>` per assertion.
/// Unfiltered counts are plain `count(*)` and `count(column)`, which
/// DataFusion answers from Parquet footers (no scan at all) when nothing
/// else in the query needs the rows.
fn fused_sql(relation: &str, assertions: &[&Assertion]) -> String {
    let mut select = Vec::new();
    for (i, a) in assertions.iter().enumerate() {
        let at = a.scope();
        let checked = match a.filter {
            None => "count(*)".to_string(),
            Some(_) => format!("count(*) filter (where {})", at.where_sql()),
        };
        // Only fusable checks are fused; the rest would count nothing.
        let failing = a.kind.check().fused_failing(&at).unwrap_or_else(|| "0".into());
        select.push(format!("cast({checked} as bigint) as c{i}, cast({failing} as bigint) as f{i}"));
    }
    format!("select {} from {relation}", select.join(", "))
}

/// What the query of a check that is not fused found.
#[derive(Default)]
struct Found {
    /// (rows checked, failing rows).
    counts: (u64, u64),
    /// Duplicates: the keys it found (see [`Evaluated::duplicated_keys`]).
    keys: Vec<RecordBatch>,
    /// Duplicates scanned on every row: the rows with a null key part.
    null_keys: Option<u64>,
}

/// What the query of a check that is not fused finds (see [`Found`]).
async fn own_query(engine: &Engine, a: &Assertion, counted: &Counted) -> Result<Found, CheckError> {
    let at = a.scope();
    if let Kind::Duplicates(d) = &a.kind {
        return duplicates(engine, a, d, counted).await;
    }
    match a.kind.check().own_query(&at) {
        Some(sql) => {
            let row = single_row(engine, &sql).await?;
            Ok(Found { counts: (row[0], row[1]), ..Found::default() })
        }
        None => {
            fused_counts(engine, at.relation, &[a]).await.map(|v| Found { counts: v[0], ..Found::default() })
        }
    }
}

/// A duplicates check: from the keys `counted` as the rows were written or
/// staged when it checks every row, else by a scan of its key.
async fn duplicates(
    engine: &Engine,
    a: &Assertion,
    d: &Duplicates,
    counted: &Counted,
) -> Result<Found, CheckError> {
    if let Some(c) = counted.get(&d.columns).filter(|_| a.filter.is_none()) {
        return Ok(Found {
            counts: (c.rows, c.duplicates),
            keys: first_rows(&c.keys, a.rows_kept()),
            null_keys: None,
        });
    }
    let scan = d.scan(engine, &a.scope(), a.rows_kept()).await?;
    Ok(Found { counts: scan.counts, keys: scan.keys, null_keys: scan.null_keys })
}

/// The first row of `sql` as signed integers (a null is `i64::MIN`).
async fn single_row_signed(engine: &Engine, sql: &str) -> Result<Vec<i64>, CheckError> {
    first_row(&engine.collect(sql).await?)
}

/// The first row of `batches`, all of them bigint columns (null is `i64::MIN`).
pub(super) fn first_row(batches: &[RecordBatch]) -> Result<Vec<i64>, CheckError> {
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| CheckError::from("the check returned no row"))?;
    batch
        .columns()
        .iter()
        .map(|c| {
            let ints = c
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| CheckError(format!("unexpected type {}", c.data_type())))?;
            Ok(if ints.is_null(0) { i64::MIN } else { ints.value(0) })
        })
        .collect()
}

/// The first row of `sql` as counts (null and negative are 0).
async fn single_row(engine: &Engine, sql: &str) -> Result<Vec<u64>, CheckError> {
    Ok(single_row_signed(engine, sql).await?.into_iter().map(|v| v.max(0) as u64).collect())
}

/// The first `n` rows of `batches`.
pub(super) fn first_rows(batches: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    let mut left = n;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let take = b.num_rows().min(left);
        out.push(b.slice(0, take));
        left -= take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertions::key_runs::KEY_ROWS;
    use crate::assertions::{Completeness, RowCount, Severity, Status, Threshold};

    fn check(kind: Kind, filter: Option<&str>) -> Assertion {
        Assertion {
            name: format!("{}_t", kind.name()),
            relation: "t".into(),
            relation_sql: "t".into(),
            kind,
            severity: Severity::Warn,
            filter: filter.map(String::from),
            warn_if: Threshold::NONZERO,
            error_if: Threshold::NONZERO,
            limit: None,
            file: "t.yml".into(),
            line: 1,
        }
    }

    fn duplicates_check(limit: Option<usize>) -> Assertion {
        Assertion {
            limit,
            ..check(
                Kind::Duplicates(Duplicates { columns: vec!["k".into()], max_ratio: 0.0 }),
                Some("v <> 'skip'"),
            )
        }
    }

    #[tokio::test]
    async fn unfiltered_completeness_of_one_column_is_read_from_parquet_footers() {
        let engine = Engine::new(2);
        let dir = tempfile::tempdir().unwrap();
        for (i, rows) in ["(1, 'a'), (null, 'b')", "(3, null), (null, null), (5, 'e')"].iter().enumerate() {
            let path = dir.path().join(format!("part-{i}.parquet"));
            let copy = format!(
                "copy (select * from (values {rows}) as v(k, v)) to '{}' stored as parquet",
                path.display()
            );
            engine.ctx().sql(&copy).await.unwrap().collect().await.unwrap();
        }
        engine.ctx().register_parquet("t", dir.path().to_str().unwrap(), Default::default()).await.unwrap();
        let completeness =
            |column: &str| Kind::Completeness(Completeness { columns: vec![column.into()], min_ratio: 1.0 });
        let checks = [
            check(completeness("k"), None),
            check(completeness("v"), Some("k is not null")),
            check(Kind::RowCount(RowCount { min: None, max: None }), None),
        ];
        let results = evaluate(&engine, &checks, 0, &Counted::new()).await;
        let counts: Vec<(u64, u64)> =
            results.iter().map(|r| (r.outcome.rows_checked, r.outcome.failing_rows)).collect();
        // k: 2 nulls of 5 rows; v where k is not null: (3, null) of 3 rows.
        assert_eq!(counts[..2], [(5, 2), (3, 1)]);
        assert_eq!(counts[2].0, 5);
        // Alone, the unfiltered checks need no scan: the footers' counts answer them.
        let sql = fused_sql("t", &[&checks[0], &checks[2]]);
        let plan = engine.ctx().sql(&sql).await.unwrap().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
        assert!(!shown.contains("DataSourceExec"), "{shown}");
    }

    #[tokio::test]
    async fn completeness_of_a_duplicates_key_is_counted_by_its_scan() {
        let engine = Engine::new(2);
        // 7 rows; a null key part in 3 of them (one with both parts null).
        let rows = "(1, 'a'), (1, 'a'), (2, null), (null, 'b'), (null, null), (3, 'c'), (4, 'd')";
        engine
            .ctx()
            .sql(&format!("create view t as select * from (values {rows}) as v(k, v)"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let key = || vec!["k".to_string(), "v".to_string()];
        let duplicates = check(Kind::Duplicates(Duplicates { columns: key(), max_ratio: 0.0 }), None);
        let completeness = |columns: Vec<String>, filter| {
            check(Kind::Completeness(Completeness { columns, min_ratio: 1.0 }), filter)
        };
        // The same key in another order: paired. Filtered, or of another key: queried.
        let checks = [
            duplicates,
            completeness(vec!["v".into(), "k".into()], None),
            completeness(key(), Some("k <> 3")),
            completeness(vec!["v".into()], None),
        ];
        let all: Vec<usize> = (0..checks.len()).collect();
        assert_eq!(completeness_by_key(&checks, &all, &Counted::new()), BTreeMap::from([(0, vec![1])]));
        let results = evaluate(&engine, &checks, 0, &Counted::new()).await;
        let counts: Vec<(u64, u64)> =
            results.iter().map(|r| (r.outcome.rows_checked, r.outcome.failing_rows)).collect();
        // Duplicates: 4 rows with a full key, 1 beyond its first. The paired
        // completeness: 7 rows, 3 failing, as it counts alone (below). Where
        // k <> 3: 4 rows, 1 failing; v: 7 rows, 2 failing.
        assert_eq!(counts, [(4, 1), (7, 3), (4, 1), (7, 2)]);
        let alone = evaluate(&engine, &checks[1..2], 0, &Counted::new()).await;
        assert_eq!((alone[0].outcome.rows_checked, alone[0].outcome.failing_rows), (7, 3));
        // Duplicates counted already (by a view's plan): nothing is paired.
        let counted = Counted::from([(key(), Default::default())]);
        assert!(completeness_by_key(&checks, &all, &counted).is_empty());
    }

    #[tokio::test]
    async fn duplicates_count_rows_beyond_each_keys_first_and_keep_a_few_keys() {
        let engine = Engine::new(2);
        // Keys 0..7 twice, key 100 three times (a fourth row is outside the
        // filter), key 200 once, and a null key (not checked): 16 + 3 + 1 =
        // 20 rows checked, 8 + 2 of them beyond their key's first.
        let mut values: Vec<String> =
            (0..8).flat_map(|k| [format!("({k}, 'a')"), format!("({k}, 'b')")]).collect();
        values.extend(
            ["(100, 'a')", "(100, 'b')", "(100, 'c')", "(100, 'skip')", "(null, 'a')", "(200, 'a')"]
                .map(String::from),
        );
        let sql = format!("create view t as select * from (values {}) as v(k, v)", values.join(", "));
        engine.ctx().sql(&sql).await.unwrap().collect().await.unwrap();

        let results = evaluate(&engine, &[duplicates_check(Some(0))], 0, &Counted::new()).await;
        let o = &results[0].outcome;
        assert_eq!((o.status, o.rows_checked, o.failing_rows), (Status::Warn, 20, 10));
        // limit 0 still keeps the keys the console shows: SAMPLE_ROWS of them.
        let keys = &results[0].duplicated_keys;
        assert_eq!(keys.iter().map(|b| b.num_rows()).sum::<usize>(), crate::assertions::check::SAMPLE_ROWS);
        let n = keys[0].column_by_name(KEY_ROWS).unwrap().as_primitive::<Int64Type>();
        assert!(n.values().iter().all(|&n| n >= 2), "{n:?}");

        let results = evaluate(&engine, &[duplicates_check(Some(100))], 0, &Counted::new()).await;
        assert_eq!(results[0].duplicated_keys.iter().map(|b| b.num_rows()).sum::<usize>(), 9);
    }
}
