//! `tally test`: dbt's test syntax and tally's own checks on published tables,
//! with counts worked out by hand from the dbt_style seeds.

use crate::common::*;

const EXTRA: &str = r#"
  - name: stg_orders
    columns:
      - name: status
        data_tests:
          # statuses: returned, completed x4 -> 'returned' is outside the list: 1 failing row
          - accepted_values:
              values: ['placed', 'shipped', 'completed']
          # same, but only a warning
          - accepted_values:
              values: ['completed']
              config: {severity: warn}
      - name: customer_id
        data_tests:
          # customer ids 1,3,1,2,3: 5 non-null keys, 3 distinct -> 2 duplicates, ratio 0.4 <= 0.5: pass
          - duplicates: {max_ratio: 0.5}
    data_tests:
      - row_count: {min: 10}            # 5 rows: fail
      - expression: "order_id > 1"      # order 1 only: 1 failing row
      - completeness: {columns: [order_id, status], min_ratio: 0.95}
      - duplicates: {columns: [customer_id, status], config: {where: "order_id > 1"}}  # (3,completed) twice -> 1
"#;

#[test]
fn tally_test_fuses_checks_and_gates_ci() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    tally(d, &["build", "-q"]).assert_code(0);
    let run = tally(d, &["test"]);
    run.assert_code(0);
    assert!(run.stdout.contains("7 pass, 0 warn, 0 fail, 0 error"), "{}", run.stdout);

    let schema = d.join("models/marts/schema.yml");
    let text = std::fs::read_to_string(&schema)
        .unwrap()
        .replace("exposures:", &format!("{}\nexposures:", EXTRA.trim_end()));
    std::fs::write(&schema, text).unwrap();
    let junit = d.join("out.xml");
    let run = tally(d, &["test", "--junit", junit.to_str().unwrap()]);
    run.assert_code(1);
    assert!(run.stdout.contains("9 pass, 1 warn, 4 fail, 0 error"), "{}", run.stdout);

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("target/run_results.json")).unwrap()).unwrap();
    let get = |name: &str| {
        results["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {results}"))
    };
    assert_eq!(get("accepted_values_stg_orders_status_2")["status"], "warn");
    let av = get("accepted_values_stg_orders_status");
    assert_eq!(
        (av["status"].as_str(), av["failing_rows"].as_u64(), av["rows_checked"].as_u64()),
        (Some("fail"), Some(1), Some(5))
    );
    let dup = get("duplicates_stg_orders_customer_id");
    assert_eq!(dup["status"], "pass");
    assert_eq!(dup["failing_rows"], 2);
    assert!((dup["observed"].as_f64().unwrap() - 0.4).abs() < 1e-12);
    let rc = get("row_count_stg_orders");
    assert_eq!((rc["status"].as_str(), rc["observed"].as_f64()), (Some("fail"), Some(5.0)));
    let pair = get("duplicates_stg_orders_customer_id_status");
    assert_eq!(
        (pair["failing_rows"].as_u64(), pair["rows_checked"].as_u64(), pair["status"].as_str()),
        (Some(1), Some(4), Some("fail"))
    );
    // Its failing rows: every row of the duplicated key, within the check's `where`.
    assert_eq!(pair["sample"], serde_json::json!(["customer_id=3, status=completed"]));
    let stored =
        std::path::PathBuf::from(pair["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    assert_eq!(
        rows(&read_parquet(&stored)),
        [
            "order_id=2, customer_id=3, order_date=2018-01-02, status=completed",
            "order_id=5, customer_id=3, order_date=2018-01-05, status=completed"
        ]
    );
    let exprs: Vec<&serde_json::Value> =
        results["assertions"].as_array().unwrap().iter().filter(|a| a["kind"] == "expression").collect();
    assert_eq!(exprs[0]["failing_rows"], 1);
    assert_eq!(exprs[0]["status"], "fail");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testsuites name="tally" tests="14" failures="4""#), "{xml}");
    assert!(xml.contains(r#"name="accepted_values_stg_orders_status" file="models/marts/schema.yml" line="39"><failure type="fail""#), "{xml}");

    // A check that cannot plan is a project error at its line, before any check runs.
    let text = std::fs::read_to_string(&schema).unwrap().replace(
        "      - expression: \"order_id > 1\"",
        "      - expression: \"no_such_column > 1\"\n      - expression: \"order_id > 1\"",
    );
    std::fs::write(&schema, text).unwrap();
    let run = tally(d, &["test"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("models/marts/schema.yml:") && run.stderr.contains("no_such_column"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Assertions:"), "{}", run.stdout);
}

/// dbt source freshness: `loaded_at_field` + `freshness` on the source, turned
/// off per table with `freshness: null`, measured against the `as_of` var.
#[test]
fn source_freshness_against_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tally_project.yml"), "name: fresh\n").unwrap();
    std::fs::create_dir_all(d.join("models")).unwrap();
    std::fs::write(
        d.join("models/sources.yml"),
        r#"version: 2
sources:
  - name: crm
    location: raw
    loaded_at_field: created_at
    freshness:
      warn_after: {count: 24, period: hour}
      error_after: {count: 2, period: day}
    tables:
      - name: accounts
      - name: opportunities
        freshness: null
"#,
    )
    .unwrap();
    std::fs::write(d.join("models/m.sql"), "select * from {{ source('crm', 'accounts') }}").unwrap();
    crate::sources::raw_data(&d.join("raw"));
    // The newest account was created 2024-03-01 00:00 UTC.
    let check = |as_of: &str, code: i32, status: &str, hours: f64| {
        let run = tally(d, &["freshness", "--vars", &format!("{{as_of: '{as_of}'}}")]);
        run.assert_code(code);
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("target/run_results.json")).unwrap())
                .unwrap();
        let list = results["assertions"].as_array().unwrap();
        assert_eq!(list.len(), 1, "only accounts is checked: {results}");
        assert_eq!(list[0]["relation"], "crm.accounts");
        assert_eq!(list[0]["status"], status, "{as_of}: {}", run.stdout);
        assert_eq!(list[0]["observed"].as_f64().unwrap(), hours);
    };
    check("2024-03-01", 0, "pass", 24.0); // as_of instant 03-02 00:00: 24 h, not over 24
    check("2024-03-02", 0, "warn", 48.0); // over 24 h, not over 2 days
    check("2024-03-04", 1, "fail", 96.0);
}

/// `tally build` on a dbt project: a table whose check fails is not
/// published (readers keep the last good version), `--warn-error` turns a
/// warning into a failure, and singular tests in `tests/` and a
/// reconciliation between two relations run with the rest.
#[test]
fn build_gates_publishing_on_checks() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    // Each order's amount is the sum of its payments (cents / 100): 5 orders, all equal.
    let schema = d.join("models/marts/schema.yml");
    let reconcile = "    data_tests:\n      - reconciliation: {measure: \"sum(amount)\", to: \"ref('stg_payments')\", to_measure: \"sum(amount)\", by: [order_id]}\n    colums_typo: true";
    let text = std::fs::read_to_string(&schema).unwrap().replace("    colums_typo: true", reconcile);
    std::fs::write(&schema, &text).unwrap();
    // Order 1 was returned: a warning. No order has a negative amount: a pass.
    std::fs::create_dir_all(d.join("tests")).unwrap(); // git keeps no empty folder
    std::fs::write(
        d.join("tests/no_returns.sql"),
        "{{ config(severity='warn') }}\nselect order_id from {{ ref('orders') }} where status = 'returned'\n",
    )
    .unwrap();
    std::fs::write(
        d.join("tests/no_negative_amounts.sql"),
        "select * from {{ ref('orders') }} where amount < 0\n",
    )
    .unwrap();

    let run = tally(d, &["build"]);
    run.assert_code(0);
    assert!(run.stdout.contains("Assertions: 9 pass, 1 warn, 0 fail, 0 error"), "{}", run.stdout);
    assert!(
        run.stdout.contains("warn: no_returns tests/no_returns.sql:1: 1 failing rows\n      order_id=1\n"),
        "{}",
        run.stdout
    );
    let results = run_results(d);
    let rec =
        results["assertions"].as_array().unwrap().iter().find(|a| a["kind"] == "reconciliation").unwrap();
    assert_eq!(
        (rec["rows_checked"].as_u64(), rec["failing_rows"].as_u64(), rec["status"].as_str()),
        (Some(5), Some(0), Some("pass")),
        "{rec}"
    );
    let before = rows(&read_delta(&d.join("warehouse/orders")));

    // --warn-error: the warning now fails, but it reads published data, so nothing is held back.
    tally(d, &["build", "--warn-error", "-q"]).assert_code(1);

    // A failing check on orders: not published, the previous version stays.
    std::fs::write(
        &schema,
        text.replace(
            "      - reconciliation:",
            "      - expression: \"order_id > 1\"\n      - reconciliation:",
        ),
    )
    .unwrap();
    let run = tally(d, &["build"]);
    run.assert_code(1);
    let results = run_results(d);
    let orders = result_of(&results, "orders");
    assert_eq!(orders["status"], "error");
    assert_eq!(
        orders["message"],
        "not published, the previous version stays: 1 assertion(s) failed: expression_orders (1 of 5 rows)"
    );
    assert_eq!(rows(&read_delta(&d.join("warehouse/orders"))), before);
    assert!(run.stdout.contains("fail: expression_orders models/marts/schema.yml:"), "{}", run.stdout);
    // The singular tests on orders could not run on this build's orders.
    let singular: Vec<&serde_json::Value> =
        results["assertions"].as_array().unwrap().iter().filter(|a| a["kind"] == "custom").collect();
    assert_eq!(singular.len(), 2);
    assert!(
        singular.iter().all(|a| a["status"] == "error"
            && a["message"].as_str().unwrap().contains("was not built in this run")),
        "{singular:?}"
    );
    // The failing row is kept for inspection.
    let path =
        results["assertions"].as_array().unwrap().iter().find(|a| a["name"] == "expression_orders").unwrap()
            ["failing_rows_path"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(std::path::Path::new(path.trim_start_matches("file://")).exists(), "{path}");
}

/// A check that reads another model waits for it, and still runs when that
/// model is skipped: `orders` checks its customers against `customers`,
/// whose upstream fails at run time.
#[test]
fn a_check_waiting_on_a_skipped_model_still_runs() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    std::fs::write(
        d.join("models/staging/stg_customers.sql"),
        "{{ config(materialized='table') }}\nselect id as customer_id, first_name, last_name, cast(case when id = 1 then 'x' else '1' end as bigint) as boom\nfrom {{ ref('raw_customers') }}\n",
    )
    .unwrap();
    let run = tally(d, &["build"]);
    run.assert_code(1);
    let r = run_results(d);
    assert_eq!(result_of(&r, "stg_customers")["status"], "error");
    assert_eq!(result_of(&r, "customers")["status"], "skipped");
    // Its relationships check finds no customer at all: not published.
    let orders = result_of(&r, "orders");
    assert_eq!(orders["status"], "error", "{orders}");
    assert!(
        orders["message"].as_str().unwrap().contains("relationships_orders_customer_id (5 of 5 rows)"),
        "{orders}"
    );
    assert!(!d.join("warehouse/orders").exists(), "a rejected first version leaves no folder behind");
}
