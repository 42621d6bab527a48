//! Run assertions: one aggregate scan per relation for every check that can
//! be written as `count(*) FILTER (WHERE ...)`, one query each for the rest.
//! If the fused query fails (say, a bad `expression`), each of its checks is
//! retried alone so the failure lands on the check that caused it.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;

use super::{Assertion, Kind, Outcome, Status};
use crate::plan::Engine;
use crate::render::quote_ident;

/// Evaluate `assertions` (in any order); outcomes come back in the same order.
/// Freshness is measured against `as_of_us` (microseconds since the epoch, UTC).
pub async fn evaluate(engine: &Engine, assertions: &[Assertion], as_of_us: i64) -> Vec<Outcome> {
    let mut by_relation: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in assertions.iter().enumerate() {
        by_relation.entry(a.relation_sql.as_str()).or_default().push(i);
    }
    let mut counts: Vec<Result<(u64, u64), String>> = vec![Err(String::new()); assertions.len()];
    for (relation, idx) in by_relation {
        let fused: Vec<usize> = idx.iter().copied().filter(|&i| fusable(&assertions[i])).collect();
        match fused_counts(engine, relation, &fused.iter().map(|&i| &assertions[i]).collect::<Vec<_>>()).await {
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
        for &i in idx.iter().filter(|&&i| !fusable(&assertions[i])) {
            counts[i] = own_query(engine, &assertions[i]).await;
        }
    }
    let mut out = Vec::with_capacity(assertions.len());
    for (a, c) in assertions.iter().zip(counts) {
        out.push(match &a.kind {
            Kind::Freshness { .. } => freshness(engine, a, as_of_us).await,
            _ => a.outcome(c),
        });
    }
    out
}

/// Lag in hours from max(column) to the as_of instant.
async fn freshness(engine: &Engine, a: &Assertion, as_of_us: i64) -> Outcome {
    let Kind::Freshness { column, warn_after_hours, error_after_hours, .. } = &a.kind else { return a.outcome(Err("not a freshness check".into())) };
    let sql = format!(
        "select count(*) as n, cast(date_part('epoch', max({c})) * 1000000 as bigint) as newest from {} where {}",
        a.relation_sql,
        filter(a),
        c = quote_ident(column)
    );
    let row = match single_row_signed(engine, &sql).await {
        Ok(r) => r,
        Err(e) => return a.outcome(Err(e)),
    };
    let mut o = a.outcome(Ok((row[0].max(0) as u64, 0)));
    let lag = lag_hours(row.get(1).copied(), as_of_us);
    o.observed = lag;
    let over = |h: &Option<f64>| h.is_some_and(|h| lag > h);
    o.status = if over(error_after_hours) && a.severity == super::Severity::Error {
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

fn fusable(a: &Assertion) -> bool {
    match &a.kind {
        Kind::Duplicates { columns, .. } => columns.len() == 1,
        Kind::Completeness { .. } | Kind::AcceptedValues { .. } | Kind::RowCount { .. } | Kind::Expression { .. } => true,
        Kind::Freshness { .. } | Kind::Relationships { .. } | Kind::Reconciliation { .. } | Kind::Custom { .. } => false,
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
    let right = side(to_measure, &relation_sql(to), &to_filter.as_ref().map_or("true".to_string(), |f| format!("({f})")));
    let diff = "a.m as measure, b.m as to_measure, abs(coalesce(a.m, 0) - coalesce(b.m, 0)) as difference";
    Some(if keys.is_empty() {
        format!("select {diff} from ({left}) a cross join ({right}) b")
    } else {
        let pick = keys.iter().map(|k| format!("coalesce(a.{k}, b.{k}) as {k}")).collect::<Vec<_>>().join(", ");
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

fn no_null(columns: &[String]) -> String {
    columns.iter().map(|c| format!("{} is not null", quote_ident(c))).collect::<Vec<_>>().join(" and ")
}

/// (rows checked, failing rows) of each assertion, from one aggregate query.
async fn fused_counts(engine: &Engine, relation: &str, assertions: &[&Assertion]) -> Result<Vec<(u64, u64)>, String> {
    if assertions.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = Vec::new();
    for (i, a) in assertions.iter().enumerate() {
        let f = filter(a);
        let (checked, failing) = match &a.kind {
            Kind::Completeness { columns, .. } => (format!("count(*) filter (where {f})"), format!("count(*) filter (where {f} and ({}))", any_null(columns))),
            Kind::Duplicates { columns, .. } => {
                let c = quote_ident(&columns[0]);
                (format!("count({c}) filter (where {f})"), format!("count({c}) filter (where {f}) - count(distinct {c}) filter (where {f})"))
            }
            Kind::AcceptedValues { column, values } => {
                let c = quote_ident(column);
                (format!("count(*) filter (where {f})"), format!("count(*) filter (where {f} and {c} is not null and {c} not in ({}))", values.join(", ")))
            }
            Kind::Expression { expr } => (format!("count(*) filter (where {f})"), format!("count(*) filter (where {f} and (({expr})) is false)")),
            Kind::RowCount { .. } => (format!("count(*) filter (where {f})"), "cast(0 as bigint)".to_string()),
            // Never fused (see `fusable`); valid SQL all the same.
            Kind::Relationships { .. } | Kind::Freshness { .. } | Kind::Reconciliation { .. } | Kind::Custom { .. } => {
                ("cast(0 as bigint)".to_string(), "cast(0 as bigint)".to_string())
            }
        };
        select.push(format!("cast({checked} as bigint) as c{i}, cast({failing} as bigint) as f{i}"));
    }
    let sql = format!("select {} from {relation}", select.join(", "));
    let row = single_row(engine, &sql).await?;
    Ok((0..assertions.len()).map(|i| (row[2 * i], row[2 * i + 1])).collect())
}

async fn own_query(engine: &Engine, a: &Assertion) -> Result<(u64, u64), String> {
    let f = filter(a);
    let relation = &a.relation_sql;
    let sql = match &a.kind {
        // One scan: rows per key, then every row beyond a key's first.
        Kind::Duplicates { columns, .. } => {
            let cols = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
            let keep = no_null(columns);
            format!(
                "select cast(coalesce(sum(n), 0) as bigint) as c, cast(coalesce(sum(n), 0) - count(*) as bigint) as f \
                 from (select count(*) as n from {relation} where {f} and {keep} group by {cols}) keys"
            )
        }
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
            format!("select count(*) as c, count(*) filter (where difference > {tolerance}) as f from ({groups}) g")
        }
        Kind::Custom { sql } => format!("select count(*) as c, count(*) as f from ({sql}) failing"),
        Kind::Freshness { .. } => return Ok((0, 0)),
        _ => return fused_counts(engine, relation, &[a]).await.map(|v| v[0]),
    };
    let row = single_row(engine, &sql).await?;
    Ok((row[0], row[1]))
}

/// SQL for a relation name: a model or seed, or `source.table`.
pub fn relation_sql(name: &str) -> String {
    match name.split_once('.') {
        Some((s, t)) => format!("{}.{}", quote_ident(s), quote_ident(t)),
        None => quote_ident(name),
    }
}

/// The first row of `sql` as signed integers (a null is `i64::MIN`).
async fn single_row_signed(engine: &Engine, sql: &str) -> Result<Vec<i64>, String> {
    let df = engine.ctx.sql(sql).await.map_err(|e| crate::plan::clean_message(&e))?;
    let batches = df.collect().await.map_err(|e| crate::plan::clean_message(&e))?;
    let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or_else(|| "the check returned no row".to_string())?;
    batch
        .columns()
        .iter()
        .map(|c| {
            let ints = c.as_primitive_opt::<Int64Type>().ok_or_else(|| format!("unexpected type {}", c.data_type()))?;
            Ok(if ints.is_null(0) { i64::MIN } else { ints.value(0) })
        })
        .collect()
}

/// The first row of `sql` as counts (null and negative are 0).
async fn single_row(engine: &Engine, sql: &str) -> Result<Vec<u64>, String> {
    Ok(single_row_signed(engine, sql).await?.into_iter().map(|v| v.max(0) as u64).collect())
}
