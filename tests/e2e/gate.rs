//! Write, audit, publish on generator data: with defects on, the checks warn
//! and fail with the counts the generated rows imply (worked out here from
//! the rows themselves, not by tally), the table whose check fails keeps its
//! previous version and its descendants are skipped; with defects off,
//! everything passes.

use std::collections::{BTreeMap, BTreeSet};

use tally::generate::{GenConfig, Table, V, generate, write};

use crate::common::*;
use crate::revenue::reference_project;

const SCALE: f64 = 0.02;
const SEED: u64 = 11;

/// Per raw table: (rows, rows with a null key column, duplicate keys =
/// non-null keys - distinct non-null keys, newest _loaded_at in µs).
fn expected(tables: &[Table]) -> BTreeMap<&'static str, (u64, u64, u64, i64)> {
    tables
        .iter()
        .map(|t| {
            let all: Vec<_> = t.files.iter().flatten().collect();
            let null_keys = all.iter().filter(|r| t.key.iter().any(|&k| r[k] == V::Null)).count() as u64;
            let keys: Vec<String> = all
                .iter()
                .filter(|r| t.key.iter().all(|&k| r[k] != V::Null))
                .map(|r| format!("{:?}", t.key.iter().map(|&k| &r[k]).collect::<Vec<_>>()))
                .collect();
            let distinct: BTreeSet<&String> = keys.iter().collect();
            let newest = all.iter().filter_map(|r| r[t.loaded_at].ts()).max().unwrap_or(i64::MIN);
            (t.name, (all.len() as u64, null_keys, (keys.len() - distinct.len()) as u64, newest))
        })
        .collect()
}

/// SPEC §2 staging of a single-key table: the latest row per key (by
/// updated_at, a null losing, then _loaded_at), null keys dropped, then
/// deleted rows dropped.
fn live<'a>(tables: &'a [Table], name: &str) -> Vec<&'a Vec<V>> {
    let t = tables.iter().find(|t| t.name == name).unwrap();
    let (key, upd, del) = (t.key[0], t.updated_at, t.is_deleted);
    let rank = |r: &Vec<V>| {
        (upd.and_then(|u| r[u].ts()).is_some(), upd.and_then(|u| r[u].ts()), r[t.loaded_at].ts())
    };
    let mut latest: BTreeMap<String, &Vec<V>> = BTreeMap::new();
    for r in t.files.iter().flatten().filter(|r| r[key] != V::Null) {
        let k = format!("{:?}", r[key]);
        if latest.get(&k).is_none_or(|p| rank(r) > rank(p)) {
            latest.insert(k, r);
        }
    }
    latest.into_values().filter(|r| del.is_none_or(|d| r[d] != V::B(true))).collect()
}

fn assertion<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no assertion {name}"))
}

#[test]
fn defects_fail_the_gate_and_keep_the_last_good_tables() {
    let project = reference_project();
    let d = project.path();
    let raw = tempfile::tempdir().unwrap();

    // 1. Clean data: every check passes and every table is published.
    let clean = GenConfig { scale: SCALE, seed: SEED, ..GenConfig::default() }.without_defects();
    write(&generate(&clean), raw.path()).unwrap();
    let vars = format!("{{raw_root: '{}'}}", raw.path().display());
    let run = tally(d, &["build", "--vars", &vars]);
    run.assert_code(0);
    assert!(run.stdout.contains(" 0 error, 0 skipped"), "{}", run.stdout);
    assert!(run.stdout.contains(" pass, 0 warn, 0 fail, 0 error"), "{}", run.stdout);
    let mrr_dir = d.join("warehouse/customer_mrr_monthly");
    let published = rows(&read_delta(&mrr_dir));
    assert!(!published.is_empty());
    let first_run_checks = run_results(d)["assertions"].as_array().unwrap().len();

    // 2. The same business with the connectors' defects, and billing stalled 10 days.
    let stall_hours = 240;
    let dirty = GenConfig {
        scale: SCALE,
        seed: SEED,
        stalled_source: Some("billing_subscriptions".into()),
        stall_hours,
        ..GenConfig::default()
    };
    let tables = generate(&dirty);
    std::fs::remove_dir_all(raw.path()).unwrap();
    write(&tables, raw.path()).unwrap();
    let want = expected(&tables);
    let junit = d.join("out.xml");
    let run = tally(d, &["build", "--vars", &vars, "--junit", junit.to_str().unwrap()]);
    run.assert_code(1);
    let results = run_results(d);

    // Raw keys: completeness (error below 95 %) and duplicates (warn), per table.
    for (table, (rows_total, null_keys, dups, _)) in &want {
        let keys = tables.iter().find(|t| t.name == *table).unwrap();
        let cols: Vec<&str> = keys.key.iter().map(|&k| keys.cols[k].0).collect();
        let c = assertion(&results, &format!("completeness_raw_{table}_{}", cols.join("_")));
        assert_eq!(
            (c["rows_checked"].as_u64(), c["failing_rows"].as_u64()),
            (Some(*rows_total), Some(*null_keys)),
            "{table}: {c}"
        );
        let ratio = 1.0 - *null_keys as f64 / *rows_total as f64;
        assert!((c["observed"].as_f64().unwrap() - ratio).abs() < 1e-12, "{table}: {c}");
        assert_eq!(c["status"], if ratio >= 0.95 { "pass" } else { "fail" }, "{table}: {c}");
        let u = assertion(&results, &format!("duplicates_raw_{table}_{}", cols.join("_")));
        assert_eq!(
            (u["rows_checked"].as_u64(), u["failing_rows"].as_u64()),
            (Some(rows_total - null_keys), Some(*dups)),
            "{table}: {u}"
        );
        assert_eq!(u["status"], if *dups > 0 { "warn" } else { "pass" }, "{table}: {u}");
    }

    // Freshness against the newest load of any source (freshness_as_of: latest_load).
    let as_of = want.values().map(|v| v.3).max().unwrap();
    let lag = (as_of - want["billing_subscriptions"].3) as f64 / 3.6e9;
    assert!(lag > stall_hours as f64, "the stall shows in the data: {lag}");
    let source = assertion(&results, "freshness_raw_billing_subscriptions__loaded_at");
    assert!((source["observed"].as_f64().unwrap() - lag).abs() < 1e-6, "{source}");
    assert_eq!(source["status"], "warn", "raw feeds only warn: {source}");
    let exec = assertion(&results, "freshness_customer_mrr_monthly");
    assert!((exec["observed"].as_f64().unwrap() - lag).abs() < 1e-6, "{exec}");
    assert_eq!(exec["status"], "fail", "{exec}");

    // Unknown accounts on opportunities: a warning, counted on the staged
    // (deduplicated, live) rows of both tables.
    let accounts: BTreeSet<String> =
        live(&tables, "crm_accounts").iter().map(|r| format!("{:?}", r[0])).collect();
    let opps = tables.iter().find(|t| t.name == "crm_opportunities").unwrap();
    let acc = opps.col("account_id");
    let orphans = live(&tables, "crm_opportunities")
        .iter()
        .filter(|r| r[acc] != V::Null && !accounts.contains(&format!("{:?}", r[acc])))
        .count() as u64;
    let rel = assertion(&results, "relationships_stg_crm_opportunities_account_id");
    assert_eq!(
        (rel["failing_rows"].as_u64(), rel["status"].as_str()),
        (Some(orphans), Some("warn")),
        "{rel}"
    );
    assert!(orphans > 0);

    // The gate: customer_mrr_monthly was not published; readers still see the clean version.
    let mrr = result_of(&results, "customer_mrr_monthly");
    assert_eq!(mrr["status"], "error");
    assert!(
        mrr["message"].as_str().unwrap().starts_with("not published, the previous version stays"),
        "{mrr}"
    );
    assert_eq!(rows(&read_delta(&mrr_dir)), published);
    let versions = std::fs::read_dir(mrr_dir.join("_delta_log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(versions, 1, "no second version was committed");
    assert_eq!(
        delta_files(&mrr_dir).len(),
        std::fs::read_dir(&mrr_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet"))
            .count(),
        "the rejected files were deleted"
    );
    for child in ["arr_waterfall_monthly", "retention_monthly", "unit_economics_quarterly"] {
        let r = result_of(&results, child);
        assert_eq!(
            (r["status"].as_str(), r["message"].as_str()),
            (Some("skipped"), Some("skipped: upstream `customer_mrr_monthly` failed")),
            "{child}"
        );
    }
    // Tables that do not read billing are published from the new data.
    assert_eq!(result_of(&results, "pipeline_coverage_quarterly")["status"], "success");

    // The failing check's rows and the CI artifacts.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"freshness_customer_mrr_monthly\" file=\"models/governed/governed.yml\""),
        "{xml}"
    );
    assert!(
        run.stdout.contains("fail: freshness_customer_mrr_monthly models/governed/governed.yml:"),
        "{}",
        run.stdout
    );
    let dups = assertion(&results, "duplicates_raw_crm_opportunities_opportunity_id");
    let stored =
        std::path::PathBuf::from(dups["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    assert!(stored.exists(), "{}", stored.display());
    assert!(!dups["sample"].as_array().unwrap().is_empty());

    // The scorecard of this run and the history of both.
    let scorecard = rows(&read_delta(&d.join("warehouse/dq_scorecard")));
    assert_eq!(scorecard.len(), results["assertions"].as_array().unwrap().len());
    let history = rows(&read_delta(&d.join("warehouse/dq_history")));
    assert_eq!(history.len(), first_run_checks + scorecard.len());
}
