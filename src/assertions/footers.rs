//! A verdict proven from Parquet footers before any scan. A footer holds each
//! file's row count and each column's null count and maximum; DataFusion
//! answers `count(*)`, `count(column)` and `max(column)` from them alone.
//! Those bound what a completeness check of several columns can count (at
//! least the most nulls of one column, at most their sum) and give a
//! freshness check its exact answer. When the bounds prove that no check of
//! a relation can block, its readers need not wait for the scans, which
//! still run for the exact counts reported.

use std::collections::BTreeSet;

use datafusion::physical_plan::{ExecutionPlan, collect};

use super::check::Assertion;
use super::evaluate::first_row;
use super::kinds::Kind;
use super::verdict::{Severity, Status};
use crate::plan::Engine;
use crate::render::quote_ident;

/// Whether the footers of `assertions`' relation (one relation) prove that
/// none of them blocks: fails, errors, or warns under `warn_error`. False
/// when they cannot tell, or when answering would read any data.
pub async fn proven_unblocked(
    engine: &Engine,
    assertions: &[Assertion],
    as_of_us: i64,
    warn_error: bool,
) -> bool {
    let blocking: Vec<&Assertion> =
        assertions.iter().filter(|a| warn_error || a.severity == Severity::Error).collect();
    let mut columns: BTreeSet<&str> = BTreeSet::new();
    for a in &blocking {
        match &a.kind {
            Kind::Completeness(c) if a.filter.is_none() => {
                columns.extend(c.columns.iter().map(String::as_str))
            }
            Kind::Freshness(_) if a.filter.is_none() => {}
            _ => return false,
        }
    }
    let Some(relation) = blocking.first().map(|a| a.relation_sql.as_str()) else { return true };
    let counts: Vec<String> =
        columns.iter().map(|c| format!("cast(count({}) as bigint)", quote_ident(c))).collect();
    let sql = format!("select cast(count(*) as bigint), {} from {relation}", counts.join(", "));
    let Some(row) = footer_row(engine, &sql).await.filter(|r| r.len() == columns.len() + 1) else {
        return false;
    };
    let count = |i: usize| row[i].max(0) as u64;
    let rows = count(0);
    let nulls =
        |c: &str| columns.iter().position(|k| *k == c).map_or(0, |i| rows.saturating_sub(count(i + 1)));
    for a in blocking {
        let status = match &a.kind {
            Kind::Completeness(c) => {
                let n: Vec<u64> = c.columns.iter().map(|c| nulls(c)).collect();
                let (least, most) = (n.iter().copied().max().unwrap_or(0), n.iter().sum::<u64>().min(rows));
                if least != most && !judged_monotonically(a, warn_error) {
                    return false;
                }
                a.outcome(Ok((rows, most))).status
            }
            Kind::Freshness(f) => {
                let Some(row) = footer_row(engine, &f.newest_sql(&a.scope())).await else { return false };
                a.judge_freshness(f, Ok(row), as_of_us).status
            }
            _ => return false,
        };
        if matches!(status, Status::Fail | Status::Error) || (warn_error && status == Status::Warn) {
            return false;
        }
    }
    true
}

/// Whether more failing rows can only make `a`'s outcome worse, so that
/// judging the most it can count proves the exact count passes too.
fn judged_monotonically(a: &Assertion, warn_error: bool) -> bool {
    match &a.kind {
        Kind::Completeness(c) if c.min_ratio < 1.0 => true,
        _ => a.error_if.is_monotonic() && (!warn_error || a.warn_if.is_monotonic()),
    }
}

/// The first row of `sql` if DataFusion answers it from statistics alone
/// (its physical plan reads no file); None if it would scan, or fails.
async fn footer_row(engine: &Engine, sql: &str) -> Option<Vec<i64>> {
    let plan = engine.physical_plan(sql).await.ok()?;
    if reads_data(plan.as_ref()) {
        return None;
    }
    first_row(&collect(plan, engine.task_ctx()).await.ok()?).ok()
}

/// Whether a leaf of `plan` reads data (anything but a placeholder row).
fn reads_data(plan: &dyn ExecutionPlan) -> bool {
    let children = plan.children();
    if children.is_empty() {
        return !matches!(plan.name(), "PlaceholderRowExec" | "EmptyExec");
    }
    children.iter().any(|c| reads_data(c.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertions::{Completeness, Duplicates, Freshness, Threshold};

    fn check(kind: Kind, severity: Severity) -> Assertion {
        Assertion {
            name: format!("{}_t", kind.name()),
            relation: "t".into(),
            relation_sql: "t".into(),
            kind,
            severity,
            filter: None,
            warn_if: Threshold::NONZERO,
            error_if: Threshold::NONZERO,
            limit: None,
            file: "t.yml".into(),
            line: 1,
        }
    }

    fn completeness(min_ratio: f64) -> Kind {
        Kind::Completeness(Completeness { columns: vec!["k".into(), "v".into()], min_ratio })
    }

    /// 10 rows in two files: k null in 1, v null in 2 (none in both), so a
    /// completeness check of (k, v) counts 3, and the footers say 2 to 3.
    /// The newest `at` is 2024-01-01 00:10 UTC.
    async fn engine() -> (Engine, tempfile::TempDir) {
        let engine = Engine::new(2);
        let dir = tempfile::tempdir().unwrap();
        let files = [
            "(1, 'a'), (null, 'b'), (3, null), (4, 'd'), (5, 'e')",
            "(6, 'f'), (7, null), (8, 'h'), (9, 'i'), (10, 'j')",
        ];
        for (i, rows) in files.iter().enumerate() {
            let path = dir.path().join(format!("part-{i}.parquet"));
            let at = "to_timestamp_micros(1704067200000000 + k * 60000000) as at";
            let copy = format!(
                "copy (select k, v, {at} from (values {rows}) as v(k, v)) to '{}' stored as parquet",
                path.display()
            );
            engine.ctx().sql(&copy).await.unwrap().collect().await.unwrap();
        }
        engine.ctx().register_parquet("t", dir.path().to_str().unwrap(), Default::default()).await.unwrap();
        (engine, dir)
    }

    #[tokio::test]
    async fn footers_prove_a_ratio_only_when_the_most_it_can_count_passes() {
        let (engine, _dir) = engine().await;
        let proven = |kind: Kind, severity: Severity, warn_error: bool| {
            let (engine, checks) = (&engine, [check(kind, severity)]);
            async move { proven_unblocked(engine, &checks, 0, warn_error).await }
        };
        // At most 3 of 10 failing: >= 0.7 complete holds for sure.
        assert!(proven(completeness(0.7), Severity::Error, false).await);
        // 0.75 holds only if at most 2.5 fail: the footers cannot tell (the exact count, 3, fails).
        assert!(!proven(completeness(0.75), Severity::Error, false).await);
        // A warning never blocks, unless warnings fail the build.
        assert!(proven(completeness(0.75), Severity::Warn, false).await);
        assert!(!proven(completeness(0.75), Severity::Warn, true).await);
        // dbt's default `error_if: != 0` on a count: 2 to 3 failing fails either way.
        assert!(!proven(completeness(1.0), Severity::Error, false).await);
        // Checks the footers cannot answer prove nothing.
        assert!(
            !proven(
                Kind::Duplicates(Duplicates { columns: vec!["k".into()], max_ratio: 0.0 }),
                Severity::Error,
                false
            )
            .await
        );
        assert!(
            proven(
                Kind::Duplicates(Duplicates { columns: vec!["k".into()], max_ratio: 0.0 }),
                Severity::Warn,
                false
            )
            .await
        );
    }

    #[tokio::test]
    async fn a_count_threshold_is_judged_at_the_most_only_when_more_failing_is_worse() {
        let (engine, _dir) = engine().await;
        let with = |error_if: &str| Assertion {
            error_if: Threshold::parse(error_if).unwrap(),
            ..check(completeness(1.0), Severity::Error)
        };
        assert!(proven_unblocked(&engine, &[with("> 3")], 0, false).await);
        assert!(!proven_unblocked(&engine, &[with("> 2")], 0, false).await);
        // `< 3` passes at 3 (the most) but not at 2 (the least): no proof.
        assert!(!proven_unblocked(&engine, &[with("< 3")], 0, false).await);
    }

    #[tokio::test]
    async fn freshness_is_read_from_the_footers_and_nothing_is_scanned() {
        let (engine, _dir) = engine().await;
        let two_hours_later = 1_704_067_800_000_000 + 2 * 3_600_000_000; // 02:10
        let fresh = |error_after: f64| {
            let kind = Kind::Freshness(Freshness {
                column: "at".into(),
                upstream: vec![],
                warn_after_hours: None,
                error_after_hours: Some(error_after),
            });
            check(kind, Severity::Error)
        };
        assert!(proven_unblocked(&engine, &[fresh(3.0)], two_hours_later, false).await);
        assert!(!proven_unblocked(&engine, &[fresh(1.0)], two_hours_later, false).await);
        // Behind a filter, the footers answer nothing: no proof, and no scan for one.
        engine
            .ctx()
            .sql("create view w as select * from t where k > 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let filtered = Assertion { relation_sql: "w".into(), ..check(completeness(0.5), Severity::Error) };
        assert!(!proven_unblocked(&engine, &[filtered], 0, false).await);
        let plan =
            engine.ctx().sql("select count(*) from w").await.unwrap().create_physical_plan().await.unwrap();
        assert!(reads_data(plan.as_ref()));
    }
}
