use crate::common::*;

/// seed `orders` -> view `stg_orders` -> tables `by_customer`, `by_month`
/// (independent) and ephemeral `big_orders` -> table `report`.
#[test]
fn diamond_builds_every_materialization() {
    let dir = fixture("diamond");
    let run = tally(dir.path(), &["build", "--threads", "4"]);
    run.assert_code(0);
    assert!(run.stdout.contains("6 ok, 0 error, 0 skipped"), "{}", run.stdout);
    let wh = dir.path().join("warehouse");

    // Views and ephemeral models store nothing.
    assert!(!wh.join("stg_orders").exists());
    assert!(!wh.join("big_orders").exists());

    // Seed typed by column_types: amount decimal(18,2).
    let orders = read_delta(&wh.join("orders"));
    assert_eq!(
        orders[0].schema().field_with_name("amount").unwrap().data_type(),
        &arrow::datatypes::DataType::Decimal128(18, 2)
    );
    assert_eq!(rows(&orders).len(), 5);

    // c1: 10.50 + 20.00 = 3050 cents over 2 orders; c2: 5.25 + 1.00 = 625; c3: 100.00 = 10000.
    assert_eq!(
        rows(&read_delta(&wh.join("by_customer"))),
        [
            "customer_id=c1, orders=2, cents=3050",
            "customer_id=c2, orders=2, cents=625",
            "customer_id=c3, orders=1, cents=10000",
        ]
    );
    // Jan: 1050 + 2000; Feb: 525 + 10000; Mar: 100.
    assert_eq!(
        rows(&read_delta(&wh.join("by_month"))),
        [
            "month=2024-01-01T00:00:00, cents=3050",
            "month=2024-02-01T00:00:00, cents=10525",
            "month=2024-03-01T00:00:00, cents=100",
        ]
    );
    // 3 customers and 3 months, times var multiplier = 10; orders >= 20: #2 and #4.
    assert_eq!(
        rows(&read_delta(&wh.join("report"))),
        ["kind=big_orders, n=2", "kind=customers, n=30", "kind=months, n=30"]
    );

    let results = run_results(dir.path());
    assert_eq!(result_of(&results, "by_customer")["rows"], 3);
    assert_eq!(result_of(&results, "stg_orders")["materialized"], "view");
    assert!(result_of(&results, "report")["bytes"].as_u64().unwrap() > 0);
    assert_eq!(result_of(&results, "report")["version"], 0);

    // A second build replaces each table in one new version.
    tally(dir.path(), &["build"]).assert_code(0);
    assert_eq!(result_of(&run_results(dir.path()), "report")["version"], 1);
    assert_eq!(rows(&read_delta(&wh.join("report"))).len(), 3);
}

/// `by_customer` and `by_month` only depend on the view: with 2+ threads both
/// are started before either finishes; with one thread they never overlap.
#[test]
fn independent_models_run_in_parallel() {
    let dir = fixture("diamond");
    let overlap = |threads: &str| {
        tally(dir.path(), &["run", "--threads", threads]).assert_code(0);
        let r = run_results(dir.path());
        let (a, b) = (result_of(&r, "by_customer"), result_of(&r, "by_month"));
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
        f(a, "started_at") < f(b, "completed_at") && f(b, "started_at") < f(a, "completed_at")
    };
    assert!(overlap("2"), "two threads: the two independent tables should overlap");
    assert!(!overlap("1"), "one thread: nothing overlaps");
}

#[test]
fn runtime_failure_skips_descendants_and_exits_1() {
    let dir = fixture("diamond");
    // Compiles (types are fine) but fails while running: 'x' is not a number.
    std::fs::write(
        dir.path().join("models/marts/by_month.sql"),
        "select date_trunc('month', ordered_on) as month, sum(amount_cents + cast(case when amount > 50 then 'x' else '0' end as bigint)) as cents\nfrom {{ ref('stg_orders') }}\ngroup by 1\n",
    )
    .unwrap();
    let run = tally(dir.path(), &["build"]);
    run.assert_code(1);
    assert!(run.stdout.contains("4 ok, 1 error, 1 skipped"), "{}", run.stdout);
    let r = run_results(dir.path());
    assert_eq!(result_of(&r, "by_month")["status"], "error");
    assert!(result_of(&r, "by_month")["message"].as_str().unwrap().contains("Cannot cast"), "{r}");
    assert_eq!(result_of(&r, "report")["status"], "skipped");
    assert_eq!(result_of(&r, "report")["message"], "skipped: upstream `by_month` failed");
    assert_eq!(result_of(&r, "by_customer")["status"], "success");
    assert!(!dir.path().join("warehouse/report").exists());
}

/// A table's `order by` holds in its files, which the writer would not keep
/// on its own; its uniqueness check on that key is counted as the rows are
/// written, and still stops a table with duplicates from being published.
#[test]
fn a_tables_order_by_holds_in_its_files_and_its_key_is_counted_as_written() {
    let dir = fixture("diamond");
    let d = dir.path();
    // A grouping over several partitions, then ordered.
    let model = |group: &str| {
        format!(
            "select x % 997 as k, count(*) as n from generate_series(1, 50000) as t(x) group by {group} order by k desc\n"
        )
    };
    std::fs::write(d.join("models/marts/by_key.sql"), model("x % 997")).unwrap();
    std::fs::write(
        d.join("models/marts/by_key.yml"),
        "models:\n  - name: by_key\n    columns:\n      - name: k\n        data_tests: [unique]\n",
    )
    .unwrap();
    let build = |d: &std::path::Path| build_logged(d, &["--select", "by_key", "--threads", "2"]);
    let unique = |d: &std::path::Path| {
        run_results(d)["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "unique_by_key_k")
            .cloned()
            .unwrap()
    };

    let (code, log) = build(d);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(r#"written in order counted=[["k"]]"#), "{log}");
    let keys: Vec<i64> = read_delta(&d.join("warehouse/by_key"))
        .iter()
        .flat_map(|b| {
            b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().to_vec()
        })
        .collect();
    assert_eq!(keys.len(), 997);
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "not in the model's order: {:?}", &keys[..20]);
    let passed = unique(d);
    assert_eq!(
        (passed["status"].as_str(), passed["rows_checked"].as_u64(), passed["failing_rows"].as_u64()),
        (Some("pass"), Some(997), Some(0)),
        "{passed}"
    );

    // Each key twice (odd and even x): 997 rows beyond their key's first; not published.
    std::fs::write(d.join("models/marts/by_key.sql"), model("x % 997, x % 2")).unwrap();
    let (code, log) = build(d);
    assert_eq!(code, Some(1), "{log}");
    let failed = unique(d);
    assert_eq!(
        (failed["status"].as_str(), failed["rows_checked"].as_u64(), failed["failing_rows"].as_u64()),
        (Some("fail"), Some(1994), Some(997)),
        "{failed}"
    );
    let stored =
        std::path::PathBuf::from(failed["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    let failing = rows(&read_parquet(&stored));
    assert!(
        !failing.is_empty() && failing.len().is_multiple_of(2),
        "every stored key shows both its rows: {failing:?}"
    );
    assert_eq!(rows(&read_delta(&d.join("warehouse/by_key"))).len(), 997, "the previous version stays");
}

#[test]
fn compile_writes_sql_and_typed_manifest_without_running() {
    let dir = fixture("diamond");
    tally(dir.path(), &["compile"]).assert_code(0);
    assert!(!dir.path().join("warehouse").exists(), "compile must not write data");
    let sql =
        std::fs::read_to_string(dir.path().join("target/compiled/models/staging/stg_orders.sql")).unwrap();
    assert!(sql.contains("cast(round(amount * 100) as bigint) as amount_cents"), "{sql}");
    assert!(sql.contains("from \"orders\""), "{sql}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("target/manifest.json")).unwrap())
            .unwrap();
    let node = &manifest["nodes"]["model.by_customer"];
    assert_eq!(node["depends_on"]["nodes"], serde_json::json!(["model.stg_orders"]));
    assert_eq!(node["materialized"], "table");
    assert_eq!(node["columns"][2]["name"], "cents");
    assert_eq!(node["columns"][2]["data_type"], "Int64");
    assert_eq!(node["checksum"]["checksum"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["nodes"]["model.report"]["tags"], serde_json::json!(["nightly"]));
    assert_eq!(manifest["nodes"]["model.big_orders"]["materialized"], "ephemeral");
}

/// One query file per check under target/compiled/assertions; a check
/// removed since the last compile leaves no file behind, nor an empty folder.
#[test]
fn compile_removes_the_queries_of_removed_checks() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    let checks = |d: &std::path::Path| -> Vec<String> {
        let root = d.join("target/compiled/assertions");
        let mut out = Vec::new();
        for relation in std::fs::read_dir(&root).unwrap() {
            let relation = relation.unwrap();
            for f in std::fs::read_dir(relation.path()).unwrap() {
                out.push(format!(
                    "{}/{}",
                    relation.file_name().to_string_lossy(),
                    f.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        out
    };
    tally(d, &["compile", "-q"]).assert_code(0);
    let before = checks(d);
    assert!(before.contains(&"customers/unique_customers_customer_id.sql".to_string()), "{before:?}");
    assert!(before.contains(&"orders/accepted_values_orders_status.sql".to_string()), "{before:?}");

    // customers' two checks are removed from the YAML.
    let schema = d.join("models/marts/schema.yml");
    let text = std::fs::read_to_string(&schema)
        .unwrap()
        .replace("        data_tests:\n          - unique\n          - not_null\n", "");
    std::fs::write(&schema, text).unwrap();
    tally(d, &["compile", "-q"]).assert_code(0);
    let after = checks(d);
    let expected: Vec<String> = before.iter().filter(|c| !c.starts_with("customers/")).cloned().collect();
    assert_eq!(after, expected);
    assert!(!d.join("target/compiled/assertions/customers").exists(), "an empty folder is left");
    // The next compile finds what the last one wrote in its list.
    let list = std::fs::read_to_string(d.join("target/compiled/assertions.list")).unwrap();
    let mut listed: Vec<String> = list.lines().map(String::from).collect();
    listed.sort();
    assert_eq!(listed, after);
    std::fs::write(d.join("target/compiled/assertions/orders/stale.sql"), "select 1").unwrap();
    tally(d, &["compile", "-q"]).assert_code(0);
    let mut expected = after.clone();
    expected.push("orders/stale.sql".to_string());
    expected.sort();
    assert_eq!(checks(d), expected, "a file no compile wrote is left alone");
}

#[test]
fn show_prints_rows_in_each_format() {
    let dir = fixture("diamond");
    tally(dir.path(), &["build", "-q"]).assert_code(0);
    let csv = tally(dir.path(), &["show", "by_customer", "--format", "csv", "--limit", "0"]);
    csv.assert_code(0);
    let mut lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines.remove(0), "customer_id,orders,cents");
    lines.sort();
    assert_eq!(lines, ["c1,2,3050", "c2,2,625", "c3,1,10000"]);
    let json = tally(dir.path(), &["show", "report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let table = tally(dir.path(), &["show", "stg_orders", "--limit", "2"]);
    table.assert_code(0);
    assert_eq!(table.stdout.lines().filter(|l| l.starts_with("| ")).count(), 3, "{}", table.stdout);
    let missing = tally(dir.path(), &["show", "by_custmer"]);
    missing.assert_code(2);
    assert!(missing.stderr.contains("did you mean `by_customer`?"), "{}", missing.stderr);
}

/// A dbt project (dbt_project.yml, seeds, schema.yml with dbt tests, exposures)
/// builds unchanged on the default local profile.
#[test]
fn dbt_project_builds_unchanged() {
    let dir = fixture("dbt_style");
    let run = tally(dir.path(), &["build"]);
    run.assert_code(0);
    // Keys tally ignores are named with file and line, not fatal.
    assert!(
        run.stderr.contains("models/marts/schema.yml:32: unknown key `models.1.colums_typo`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("dbt_project.yml:14: `require-dbt-version` is a dbt setting tally does not use"),
        "{}",
        run.stderr
    );
    let wh = dir.path().join("warehouse");
    // customer 1: orders 1 and 3, payments 1000 + 100 cents -> 10 + 1 dollars.
    let customers = rows(&read_delta(&wh.join("customers")));
    assert_eq!(
        customers[0],
        "customer_id=1, first_name=Michael, last_name=P., first_order=2018-01-01, most_recent_order=2018-01-04, number_of_orders=2, customer_lifetime_value=11"
    );
    let orders = rows(&read_delta(&wh.join("orders")));
    assert_eq!(
        orders[0],
        "order_id=1, customer_id=1, order_date=2018-01-01, status=returned, credit_card_amount=10, coupon_amount=0, bank_transfer_amount=0, amount=10"
    );
    // Folder config `materialized: table` without `+` applies to marts.
    assert!(!wh.join("stg_orders").exists());
    let ls = tally(dir.path(), &["ls", "-s", "tag:finance"]);
    assert_eq!(ls.stdout, "customers\norders\n");
}

#[test]
fn init_creates_a_project_that_builds() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("p");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally")).arg("init").arg(&dir).output().unwrap();
    assert!(out.status.success());
    tally(&dir, &["build"]).assert_code(0);
    // a1: 3 seats x 49 + 5 seats x 199 = 1142; a2: 10 x 199 = 1990; a3: 1 x 999.
    assert_eq!(
        rows(&read_delta(&dir.join("warehouse/account_mrr"))),
        ["account_id=a1, mrr=1142.00", "account_id=a2, mrr=1990.00", "account_id=a3, mrr=999.00"]
    );
    // init refuses to overwrite.
    let again =
        std::process::Command::new(env!("CARGO_BIN_EXE_tally")).arg("init").arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
}

/// The repository root is itself a project that builds with no setup.
#[test]
fn reference_project_builds() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    for entry in ["tally_project.yml", "models", "macros", "seeds", "profiles", "tests_data/raw"] {
        let from = root.join(entry);
        if from.is_dir() {
            copy_dir(&from, &dir.path().join(entry));
        } else if from.is_file() {
            std::fs::copy(&from, dir.path().join(entry)).unwrap();
        }
    }
    let run = tally(dir.path(), &["build"]);
    run.assert_code(0);
    assert!(run.stdout.contains(" 0 error, 0 skipped"), "{}", run.stdout);
    // Its declared checks pass on the committed sample; the sample's defects
    // only warn: opportunities whose account is unknown, and raw keys
    // delivered twice (staging dedupes them).
    assert!(run.stdout.contains("Assertions: 55 pass, 9 warn, 0 fail, 0 error"), "{}", run.stdout);
    let test = tally(dir.path(), &["test"]);
    test.assert_code(0);
    assert!(test.stdout.contains("Assertions: 55 pass, 9 warn, 0 fail, 0 error"), "{}", test.stdout);
    assert!(test.stdout.contains("warn: relationships_stg_crm_opportunities_account_id"), "{}", test.stdout);
    let warned: Vec<&str> = test.stdout.lines().filter(|l| l.starts_with("warn: ")).collect();
    assert_eq!(warned.iter().filter(|l| l.contains("duplicates_raw_")).count(), 8, "{}", test.stdout);
}

#[test]
fn clean_removes_target() {
    let dir = fixture("diamond");
    tally(dir.path(), &["compile", "-q"]).assert_code(0);
    assert!(dir.path().join("target").exists());
    tally(dir.path(), &["clean"]).assert_code(0);
    assert!(!dir.path().join("target").exists());
}

/// What a reader sees of a dbt model's Jinja loops once rendered.
#[test]
fn compiled_sql_snapshot() {
    let dir = fixture("dbt_style");
    tally(dir.path(), &["compile", "-q"]).assert_code(0);
    let sql = std::fs::read_to_string(dir.path().join("target/compiled/models/marts/orders.sql")).unwrap();
    insta::assert_snapshot!(sql);
    let ls = tally(dir.path(), &["ls", "-q", "--output", "json", "-s", "+orders"]);
    insta::assert_snapshot!(ls.stdout);
}
