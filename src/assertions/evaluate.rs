//! Run assertions: one aggregate scan per relation for every check that can
//! be written as `count(*) FILTER (WHERE ...)`, one query each for the rest.
//! If the fused query fails (say, a bad `expression`), each of its checks is
//! retried alone so the failure lands on the check that caused it.
//!
//! Duplicates are one scan of the key columns, counted by key hash (see
//! [`KeyHashes`]), which also yields the duplicated keys: a failed check's
//! rows are then found by those keys (see
//! [`failing::collect`](super::failing::collect)) instead of by grouping the
//! whole relation a second time. That scan reads every row of the key, so
//! it also answers a completeness check of the same columns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use futures::StreamExt;

use super::check::{Assertion, CheckError, Kind, Outcome, Status};
use super::key_hashes::KeyHashes;
use super::key_runs::Counted;
use crate::plan::Engine;
use crate::render::quote_ident;

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
        let own = |a: &Assertion| !fusable(a) && !matches!(a.kind, Kind::Freshness { .. });
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
            Kind::Freshness { .. } => {
                let start = Instant::now();
                let o = freshness(engine, a, as_of_us).await;
                tracing::debug!(relation = %a.relation_sql, check = %a.name, seconds = start.elapsed().as_secs_f64(), "check");
                o
            }
            _ => a.outcome(c),
        };
        out.push(Evaluated { outcome, duplicated_keys });
    }
    out
}

/// Lag in hours from max(column) to the as_of instant.
async fn freshness(engine: &Engine, a: &Assertion, as_of_us: i64) -> Outcome {
    let Some(sql) = freshness_sql(a) else { return a.outcome(Err("not a freshness check".into())) };
    judge_freshness(a, single_row_signed(engine, &sql).await, as_of_us)
}

/// The query of a freshness check: (rows checked, newest instant in microseconds).
pub(super) fn freshness_sql(a: &Assertion) -> Option<String> {
    let Kind::Freshness { column, .. } = &a.kind else { return None };
    Some(format!(
        "select count(*) as n, cast(date_part('epoch', max({c})) * 1000000 as bigint) as newest from {} where {}",
        a.relation_sql,
        filter(a),
        c = quote_ident(column)
    ))
}

/// A freshness check's outcome from the row of its [`freshness_sql`].
pub(super) fn judge_freshness(a: &Assertion, row: Result<Vec<i64>, CheckError>, as_of_us: i64) -> Outcome {
    let Kind::Freshness { warn_after_hours, error_after_hours, .. } = &a.kind else {
        return a.outcome(Err("not a freshness check".into()));
    };
    let row = match row {
        Ok(r) => r,
        Err(e) => return a.outcome(Err(e)),
    };
    let mut o = a.outcome(Ok((row.first().copied().unwrap_or(0).max(0) as u64, 0)));
    let lag = lag_hours(row.get(1).copied(), as_of_us);
    o.observed = lag;
    let over = |h: &Option<f64>| h.is_some_and(|h| lag > h);
    o.status = if over(error_after_hours) && a.severity == super::check::Severity::Error {
        Status::Fail
    } else if over(warn_after_hours) || over(error_after_hours) {
        Status::Warn
    } else {
        Status::Pass
    };
    let fmt = |h: &Option<f64>| h.map(|h| format!("{h}h")).unwrap_or_else(|| "-".into());
    o.threshold = format!("warn > {}, error > {}", fmt(warn_after_hours), fmt(error_after_hours));
    o
}

/// Hours since the newest row; an empty relation is infinitely stale.
fn lag_hours(newest: Option<i64>, as_of_us: i64) -> f64 {
    match newest {
        Some(n) if n != i64::MIN => (as_of_us - n) as f64 / 3_600_000_000.0,
        _ => f64::INFINITY,
    }
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
        let Kind::Completeness { columns, .. } = &assertions[j].kind else { continue };
        let columns = set(columns);
        let scans_key = |i: &&usize| match &assertions[**i].kind {
            Kind::Duplicates { columns: key, .. } => {
                assertions[**i].filter.is_none() && !counted.contains_key(key) && set(key) == columns
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
    match &a.kind {
        Kind::Completeness { .. }
        | Kind::AcceptedValues { .. }
        | Kind::RowCount { .. }
        | Kind::Expression { .. } => true,
        Kind::Duplicates { .. }
        | Kind::Freshness { .. }
        | Kind::Relationships { .. }
        | Kind::Reconciliation { .. }
        | Kind::Custom { .. } => false,
    }
}

/// One row per group of a reconciliation: its `by` keys, `measure` (this
/// relation), `to_measure` (the other) and their absolute `difference`; a
/// group missing on one side counts as 0 there.
pub(super) fn reconciliation_sql(a: &Assertion) -> Option<String> {
    let Kind::Reconciliation { measure, to, to_measure, to_filter, by, .. } = &a.kind else { return None };
    let keys: Vec<String> = by.iter().map(|c| quote_ident(c)).collect();
    let list = keys.join(", ");
    let side = |m: &str, rel: &str, f: &str| {
        if keys.is_empty() {
            format!("select cast({m} as double) as m from {rel} where {f}")
        } else {
            format!("select {list}, cast({m} as double) as m from {rel} where {f} group by {list}")
        }
    };
    let left = side(measure, &a.relation_sql, &filter(a));
    let right = side(
        to_measure,
        &relation_sql(to),
        &to_filter.as_ref().map_or("true".to_string(), |f| format!("({f})")),
    );
    let diff = "a.m as measure, b.m as to_measure, abs(coalesce(a.m, 0) - coalesce(b.m, 0)) as difference";
    Some(if keys.is_empty() {
        format!("select {diff} from ({left}) a cross join ({right}) b")
    } else {
        let pick =
            keys.iter().map(|k| format!("coalesce(a.{k}, b.{k}) as {k}")).collect::<Vec<_>>().join(", ");
        let on = keys.iter().map(|k| format!("a.{k} = b.{k}")).collect::<Vec<_>>().join(" and ");
        format!("select {pick}, {diff} from ({left}) a full join ({right}) b on {on}")
    })
}

pub(super) fn filter(a: &Assertion) -> String {
    a.filter.as_ref().map_or("true".to_string(), |f| format!("({f})"))
}

fn any_null(columns: &[String]) -> String {
    columns.iter().map(|c| format!("{} is null", quote_ident(c))).collect::<Vec<_>>().join(" or ")
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
        let f = filter(a);
        let checked =
            if a.filter.is_none() { "count(*)".to_string() } else { format!("count(*) filter (where {f})") };
        let failing = match &a.kind {
            Kind::Completeness { columns, .. } if a.filter.is_none() && columns.len() == 1 => {
                format!("count(*) - count({})", quote_ident(&columns[0]))
            }
            Kind::Completeness { columns, .. } => {
                format!("count(*) filter (where {f} and ({}))", any_null(columns))
            }
            Kind::AcceptedValues { column, values } => {
                let c = quote_ident(column);
                format!(
                    "count(*) filter (where {f} and {c} is not null and {c} not in ({}))",
                    values.join(", ")
                )
            }
            Kind::Expression { expr } => format!("count(*) filter (where {f} and (({expr})) is false)"),
            // A row count fails as a whole; the rest are never fused (see
            // `fusable`), valid SQL all the same.
            Kind::RowCount { .. }
            | Kind::Duplicates { .. }
            | Kind::Relationships { .. }
            | Kind::Freshness { .. }
            | Kind::Reconciliation { .. }
            | Kind::Custom { .. } => "0".to_string(),
        };
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
    let f = filter(a);
    let relation = &a.relation_sql;
    let sql = match &a.kind {
        Kind::Relationships { column, to, field } => {
            let c = quote_ident(column);
            let parent = relation_sql(to);
            let pf = quote_ident(field);
            format!(
                "select (select count({c}) from {relation} where {f}) as c, \
                 (select count(*) from {relation} child where {f} and child.{c} is not null \
                  and not exists (select 1 from {parent} parent where parent.{pf} = child.{c})) as f"
            )
        }
        Kind::Reconciliation { tolerance, .. } => {
            let groups = reconciliation_sql(a).unwrap_or_default();
            format!(
                "select count(*) as c, count(*) filter (where difference > {tolerance}) as f from ({groups}) g"
            )
        }
        Kind::Custom { sql } => format!("select count(*) as c, count(*) as f from ({sql}) failing"),
        Kind::Freshness { .. } => return Ok(Found::default()),
        Kind::Duplicates { columns, .. } => match counted.get(columns).filter(|_| a.filter.is_none()) {
            Some(c) => {
                return Ok(Found {
                    counts: (c.rows, c.duplicates),
                    keys: first_rows(&c.keys, a.rows_kept()),
                    null_keys: None,
                });
            }
            None => return duplicates(engine, a, columns).await,
        },
        _ => {
            return fused_counts(engine, relation, &[a])
                .await
                .map(|v| Found { counts: v[0], ..Found::default() });
        }
    };
    let row = single_row(engine, &sql).await?;
    Ok(Found { counts: (row[0], row[1]), ..Found::default() })
}

/// Rows per non-null key, counted by [`KeyHashes`] on every partition of a
/// scan of the key columns at once: (rows checked, rows beyond each key's
/// first), up to [`Assertion::rows_kept`] duplicated keys, and without a
/// `where`, the rows with a null key part.
async fn duplicates(engine: &Engine, a: &Assertion, columns: &[String]) -> Result<Found, CheckError> {
    let cols = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let sql = format!("select {cols} from {} where {}", a.relation_sql, filter(a));
    let df = engine.ctx.sql(&sql).await?;
    let schema = df.schema().as_arrow().clone();
    let mut parts = Vec::new();
    for mut stream in df.execute_stream_partitioned().await? {
        let mut part = KeyHashes::new(&schema, columns)?;
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
    let null_keys = a.filter.is_none().then(|| parts.iter().map(KeyHashes::null_keys).sum());
    let counts = KeyHashes::finish(parts, a.rows_kept())?;
    Ok(Found { counts: (counts.rows, counts.duplicates), keys: counts.keys, null_keys })
}

/// SQL for a relation name: a model or seed, or `source.table`.
pub fn relation_sql(name: &str) -> String {
    match name.split_once('.') {
        Some((s, t)) => format!("{}.{}", quote_ident(s), quote_ident(t)),
        None => quote_ident(name),
    }
}

/// The first row of `sql` as signed integers (a null is `i64::MIN`).
async fn single_row_signed(engine: &Engine, sql: &str) -> Result<Vec<i64>, CheckError> {
    let df = engine.ctx.sql(sql).await?;
    first_row(&df.collect().await?)
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
    use crate::assertions::check::{Severity, Threshold};
    use crate::assertions::key_runs::KEY_ROWS;

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
            ..check(Kind::Duplicates { columns: vec!["k".into()], max_ratio: 0.0 }, Some("v <> 'skip'"))
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
            engine.ctx.sql(&copy).await.unwrap().collect().await.unwrap();
        }
        engine.ctx.register_parquet("t", dir.path().to_str().unwrap(), Default::default()).await.unwrap();
        let completeness = |column: &str| Kind::Completeness { columns: vec![column.into()], min_ratio: 1.0 };
        let checks = [
            check(completeness("k"), None),
            check(completeness("v"), Some("k is not null")),
            check(Kind::RowCount { min: None, max: None }, None),
        ];
        let results = evaluate(&engine, &checks, 0, &Counted::new()).await;
        let counts: Vec<(u64, u64)> =
            results.iter().map(|r| (r.outcome.rows_checked, r.outcome.failing_rows)).collect();
        // k: 2 nulls of 5 rows; v where k is not null: (3, null) of 3 rows.
        assert_eq!(counts[..2], [(5, 2), (3, 1)]);
        assert_eq!(counts[2].0, 5);
        // Alone, the unfiltered checks need no scan: the footers' counts answer them.
        let sql = fused_sql("t", &[&checks[0], &checks[2]]);
        let plan = engine.ctx.sql(&sql).await.unwrap().create_physical_plan().await.unwrap();
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true).to_string();
        assert!(!shown.contains("DataSourceExec"), "{shown}");
    }

    #[tokio::test]
    async fn completeness_of_a_duplicates_key_is_counted_by_its_scan() {
        let engine = Engine::new(2);
        // 7 rows; a null key part in 3 of them (one with both parts null).
        let rows = "(1, 'a'), (1, 'a'), (2, null), (null, 'b'), (null, null), (3, 'c'), (4, 'd')";
        engine
            .ctx
            .sql(&format!("create view t as select * from (values {rows}) as v(k, v)"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let key = || vec!["k".to_string(), "v".to_string()];
        let duplicates = check(Kind::Duplicates { columns: key(), max_ratio: 0.0 }, None);
        let completeness =
            |columns: Vec<String>, filter| check(Kind::Completeness { columns, min_ratio: 1.0 }, filter);
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
        engine.ctx.sql(&sql).await.unwrap().collect().await.unwrap();

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
