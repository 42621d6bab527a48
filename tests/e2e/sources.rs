//! Sources: Parquet folders typed by declared columns or by their footers.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::common::*;

fn write_parquet(path: &std::path::Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub fn raw_data(root: &std::path::Path) {
    // accounts: naive timestamps (isAdjustedToUTC=false), two files.
    let schema = Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, true),
        Field::new("employee_count", DataType::Int64, true),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    let b1 = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a1", "a2"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![10, 200])),
            Arc::new(TimestampMicrosecondArray::from(vec![1_704_067_200_000_000, 1_706_745_600_000_000])),
        ],
    )
    .unwrap();
    let b2 = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a3"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![5000])),
            Arc::new(TimestampMicrosecondArray::from(vec![1_709_251_200_000_000])),
        ],
    )
    .unwrap();
    write_parquet(&root.join("accounts/part-0.parquet"), &b1);
    write_parquet(&root.join("accounts/part-1.parquet"), &b2);
    // opportunities: amounts as DECIMAL(18,2).
    let schema = Arc::new(Schema::new(vec![
        Field::new("opportunity_id", DataType::Utf8, true),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 2), true),
    ]));
    let b = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["o1", "o2", "o3"])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("a1"), Some("a1"), None])),
            Arc::new(
                Decimal128Array::from(vec![100_050, 25_000, 999]).with_precision_and_scale(18, 2).unwrap(),
            ),
        ],
    )
    .unwrap();
    write_parquet(&root.join("opportunities/data.parquet"), &b);
}

const PROJECT: &str = "name: src\nvars:\n  raw_root: raw\nmodels:\n  src:\n    +materialized: table\n";

const SOURCES: &str = r#"version: 2
sources:
  - name: crm
    location: "{{ var('raw_root') }}"
    tables:
      - name: accounts
      - name: opportunities
        columns:
          - name: opportunity_id
            data_type: varchar
          - name: account_id
            data_type: varchar
          - name: amount
            data_type: decimal(38,4)
"#;

const MODEL: &str =
    "select a.account_id, a.created_at, count(o.opportunity_id) as opps, sum(o.amount) as amount
from {{ source('crm', 'accounts') }} a
left join {{ source('crm', 'opportunities') }} o on o.account_id = a.account_id
group by a.account_id, a.created_at
";

/// A project of `account_pipeline` over `sources`, with the raw data.
fn project(sources: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tally_project.yml"), PROJECT).unwrap();
    std::fs::create_dir_all(d.join("models")).unwrap();
    std::fs::write(d.join("models/sources.yml"), sources).unwrap();
    std::fs::write(d.join("models/account_pipeline.sql"), MODEL).unwrap();
    raw_data(&d.join("raw"));
    dir
}

#[test]
fn sources_are_typed_from_declarations_or_footers() {
    let dir = project(SOURCES);
    let d = dir.path();

    tally(d, &["compile"]).assert_code(0);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("target/manifest.json")).unwrap()).unwrap();
    let acc = &manifest["sources"]["source.crm.accounts"]["columns"];
    // Inferred from footers; naive timestamps are read as UTC instants.
    assert_eq!(acc[2]["data_type"], "Timestamp(µs, \"UTC\")");
    let opp = &manifest["sources"]["source.crm.opportunities"]["columns"];
    assert_eq!(opp[2]["data_type"], "Decimal128(38, 4)");

    tally(d, &["build"]).assert_code(0);
    // a1: 1000.50 + 250.00; a2, a3: no opportunities (o3 has a null account).
    assert_eq!(
        rows(&read_delta(&d.join("warehouse/account_pipeline"))),
        [
            "account_id=a1, created_at=2024-01-01T00:00:00Z, opps=2, amount=1250.5000",
            "account_id=a2, created_at=2024-02-01T00:00:00Z, opps=0, amount=NULL",
            "account_id=a3, created_at=2024-03-01T00:00:00Z, opps=0, amount=NULL",
        ]
    );

    // The same models over another copy of the data, chosen by a var.
    copy_dir(&d.join("raw"), &d.join("raw2"));
    std::fs::remove_file(d.join("raw2/accounts/part-1.parquet")).unwrap();
    tally(d, &["build", "--vars", "{raw_root: raw2}"]).assert_code(0);
    assert_eq!(rows(&read_delta(&d.join("warehouse/account_pipeline"))).len(), 2);

    // A source with no files is a project error naming the YAML file and line.
    let run = tally(d, &["build", "--vars", "{raw_root: nowhere}"]);
    run.assert_code(2);
    assert!(run.stderr.contains("error: models/sources.yml:6: source `crm.accounts`"), "{}", run.stderr);
}

/// [`SOURCES`] with a duplicates check on accounts and a completeness check
/// on opportunities' account_id, which o3 (no account) fails.
fn checked_sources() -> String {
    SOURCES
        .replace("      - name: accounts\n", "      - name: accounts\n        data_tests:\n          - duplicates: {columns: [account_id]}\n")
        .replace("      - name: opportunities\n", "      - name: opportunities\n        data_tests:\n          - completeness: {columns: [account_id], min_ratio: 1}\n")
}

/// In `build`, a source's checks gate the nodes reading it (and only them),
/// and a checked view is computed once into the run's scratch folder, which
/// is gone when the run ends.
#[test]
fn a_failed_source_skips_its_readers_only() {
    // opportunities: o3 has no account: completeness 2/3 < 1, an error.
    let dir = project(&checked_sources());
    let d = dir.path();
    std::fs::write(
        d.join("models/models.yml"),
        "models:\n  - name: stg_accounts\n    data_tests:\n      - row_count: {min: 3}\n      - duplicates: {columns: [account_id]}\n  - name: checked_opps\n    data_tests:\n      - row_count: {min: 1}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/stg_accounts.sql"),
        "{{ config(materialized='view') }}\nselect * from {{ source('crm', 'accounts') }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/account_count.sql"),
        "select count(*) as n, min(account_id) as first from {{ ref('stg_accounts') }}\n",
    )
    .unwrap();
    // Readers of the failed source of every kind: a checked view (staged as
    // the source is checked), an unchecked view and a table reading it.
    let view = "{{ config(materialized='view') }}\nselect * from {{ source('crm', 'opportunities') }}\n";
    std::fs::write(d.join("models/checked_opps.sql"), view).unwrap();
    std::fs::write(d.join("models/stg_opps.sql"), view).unwrap();
    std::fs::write(d.join("models/opp_count.sql"), "select count(*) as n from {{ ref('stg_opps') }}\n")
        .unwrap();

    let run = tally(d, &["build"]);
    run.assert_code(1);
    let r = run_results(d);
    let failed = "source `crm.opportunities` failed its checks: 1 assertion(s) failed: completeness_crm_opportunities_account_id (1 of 3 rows)";
    for reader in ["account_pipeline", "checked_opps", "stg_opps"] {
        let result = result_of(&r, reader);
        assert_eq!(
            (result["status"].as_str(), result["message"].as_str()),
            (Some("skipped"), Some(format!("skipped: {failed}").as_str())),
            "{reader}"
        );
    }
    let opp_count = result_of(&r, "opp_count");
    assert_eq!(
        (opp_count["status"].as_str(), opp_count["message"].as_str()),
        (Some("skipped"), Some("skipped: upstream source `crm.opportunities` failed its checks"))
    );
    assert!(!d.join("warehouse/account_pipeline").exists());
    assert!(!d.join("warehouse/opp_count").exists());
    // The view over the source that passed was checked, and its reader built from it.
    assert_eq!(result_of(&r, "stg_accounts")["status"], "success");
    assert_eq!(rows(&read_delta(&d.join("warehouse/account_count"))), ["n=3, first=a1"]);
    let checks: Vec<(&str, &str)> = r["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert!(checks.contains(&("row_count_stg_accounts", "pass")), "{checks:?}");
    assert!(checks.contains(&("duplicates_stg_accounts_account_id", "pass")), "{checks:?}");
    // The staged rows of the view do not outlive the run.
    let scratch = d.join("target/scratch");
    assert!(
        !scratch.exists() || std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch left behind"
    );
}

/// `tally test --select source:...` runs the named sources' own checks (and
/// those of the models reading them), `--exclude source:...` leaves a
/// source's checks out, and a selection with no checks says so.
#[test]
fn tally_test_selects_sources_by_name() {
    let dir = project(&checked_sources());
    let d = dir.path();
    let checked = |args: &[&str], code: i32| -> Vec<String> {
        let run = tally(d, &[&["test"], args].concat());
        run.assert_code(code);
        let r = run_results(d);
        r["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a["name"].as_str().unwrap(), a["status"].as_str().unwrap()))
            .collect()
    };
    // o3 has no account: the opportunities' completeness fails.
    assert_eq!(
        checked(&["-s", "source:crm.opportunities"], 1),
        ["completeness_crm_opportunities_account_id fail"]
    );
    assert_eq!(checked(&["-s", "source:crm.accounts"], 0), ["duplicates_crm_accounts_account_id pass"]);
    assert_eq!(checked(&["-s", "source:crm"], 1).len(), 2);
    assert_eq!(
        checked(&["--exclude", "source:crm.opportunities"], 0),
        ["duplicates_crm_accounts_account_id pass"]
    );
    // A model with no checks: nothing to test, and a warning saying so.
    let run = tally(d, &["test", "-s", "account_pipeline"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("warning: the selection has no checks; nothing was tested"),
        "{}",
        run.stderr
    );
}

/// A checked view stages only the columns the build reads: its checks', its
/// readers', other relations' checks' and singular tests'. Each of them still
/// finds what it reads, and a warned check's stored rows hold those columns.
#[test]
fn a_checked_view_stages_the_columns_the_build_reads() {
    let dir = project(SOURCES);
    let d = dir.path();
    std::fs::write(
        d.join("models/stg_opps.sql"),
        "{{ config(materialized='view') }}\nselect *, amount * 2 as doubled, upper(opportunity_id) as code from {{ source('crm', 'opportunities') }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/opp_total.sql"),
        "select count(*) as n, sum(amount) as total from {{ ref('stg_opps') }}\n",
    )
    .unwrap();
    std::fs::write(d.join("models/opp_ids.sql"), "select 'o1' as opportunity_id\n").unwrap();
    std::fs::write(
        d.join("models/models.yml"),
        "models:
  - name: stg_opps
    columns:
      - name: account_id
        data_tests:
          - not_null: {config: {severity: warn}}
  - name: opp_ids
    columns:
      - name: opportunity_id
        data_tests:
          - relationships: {to: ref('stg_opps'), field: opportunity_id}
",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("tests")).unwrap();
    std::fs::write(
        d.join("tests/codes_are_upper.sql"),
        "select code from {{ ref('stg_opps') }} where code <> upper(code)\n",
    )
    .unwrap();

    let run = tally(d, &["build"]);
    run.assert_code(0);
    assert_eq!(rows(&read_delta(&d.join("warehouse/opp_total"))), ["n=3, total=1260.4900"]);
    let r = run_results(d);
    let status = |name: &str| {
        r["assertions"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| a["status"].clone())
    };
    assert_eq!(status("relationships_opp_ids_opportunity_id"), Some("pass".into()), "{r}");
    assert_eq!(status("codes_are_upper"), Some("pass".into()), "{r}");
    // o3 has no account: a warning whose row is stored with every column
    // the build reads (`doubled` is read by nothing, so it was not staged).
    let warned = r["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["relation"] == "stg_opps" && a["status"] == "warn")
        .unwrap();
    let stored =
        std::path::PathBuf::from(warned["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    assert_eq!(rows(&read_parquet(&stored)), ["opportunity_id=o3, account_id=NULL, amount=9.9900, code=O3"]);
}

#[test]
fn a_views_duplicates_counted_while_staging_match_the_query() {
    let dir = project(SOURCES);
    let d = dir.path();
    // o1 and o2 twice, o3 once; ordered by the key, so `build` counts the
    // duplicates as it stages the view, and `test` queries them.
    std::fs::write(
        d.join("models/stg_twice.sql"),
        "{{ config(materialized='view') }}
select opportunity_id, amount from (
    select * from {{ source('crm', 'opportunities') }}
    union all
    select * from {{ source('crm', 'opportunities') }} where account_id is not null
) u order by opportunity_id\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/twice_total.sql"),
        "select sum(amount) as total from {{ ref('stg_twice') }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/models.yml"),
        "models:\n  - name: stg_twice\n    columns:\n      - name: opportunity_id\n        data_tests:\n          - unique: {config: {severity: warn}}\n",
    )
    .unwrap();

    let (code, log) = build_logged(d, &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(r#"counted=[["opportunity_id"]]"#), "{log}");
    // Every row was staged: 2 × 1000.50 + 2 × 250.00 + 9.99.
    assert_eq!(rows(&read_delta(&d.join("warehouse/twice_total"))), ["total=2510.9900"]);
    let built = assertion(d, "unique_stg_twice_opportunity_id");
    // 5 non-null keys, 3 distinct: 2 rows beyond their key's first.
    assert_eq!(
        (built["status"].as_str(), built["rows_checked"].as_u64(), built["failing_rows"].as_u64()),
        (Some("warn"), Some(5), Some(2)),
        "{built}"
    );
    let stored =
        std::path::PathBuf::from(built["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    let mut failing = rows(&read_parquet(&stored));
    failing.sort();
    assert_eq!(
        failing,
        [
            "opportunity_id=o1, amount=1000.5000",
            "opportunity_id=o1, amount=1000.5000",
            "opportunity_id=o2, amount=250.0000",
            "opportunity_id=o2, amount=250.0000"
        ]
    );

    tally(d, &["test"]).assert_code(0);
    let tested = assertion(d, "unique_stg_twice_opportunity_id");
    assert_eq!(
        (tested["rows_checked"].as_u64(), tested["failing_rows"].as_u64()),
        (Some(5), Some(2)),
        "{tested}"
    );
}

/// A source's warned duplicates are counted where a checked view's dedupe
/// sorts the whole source by the key, not by a query ahead of its readers;
/// `tally test`, which queries, finds the same. With `--warn-error` they are
/// queried ahead again: there, a warning holds the readers back.
#[test]
fn a_sources_duplicates_counted_in_its_staging_view_match_the_query() {
    let sources = SOURCES.replace(
        "          - name: opportunity_id\n            data_type: varchar\n",
        "          - name: opportunity_id\n            data_type: varchar\n            data_tests:\n              - duplicates: {config: {severity: warn}}\n",
    );
    let dir = project(&sources);
    let d = dir.path();
    // Re-deliveries of o1 and o2, and a row without a key: 5 keyed rows, 3 keys.
    let schema = Arc::new(Schema::new(vec![
        Field::new("opportunity_id", DataType::Utf8, true),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 2), true),
    ]));
    let again = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![Some("o2"), None, Some("o1")])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("a1"), Some("a2"), Some("a1")])),
            Arc::new(
                Decimal128Array::from(vec![26_000, 1, 100_050]).with_precision_and_scale(18, 2).unwrap(),
            ),
        ],
    )
    .unwrap();
    write_parquet(&d.join("raw/opportunities/data-2.parquet"), &again);
    std::fs::write(
        d.join("models/stg_opportunities.sql"),
        "{{ config(materialized='view') }}
select * exclude (_first) from (
    select *, lag(opportunity_id) over (order by opportunity_id, amount desc) is distinct from opportunity_id as _first
    from {{ source('crm', 'opportunities') }}
    where opportunity_id is not null
) ranked where _first\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/opportunity_total.sql"),
        "select count(*) as n, sum(amount) as total from {{ ref('stg_opportunities') }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/models.yml"),
        "models:\n  - name: stg_opportunities\n    columns:\n      - name: opportunity_id\n        data_tests:\n          - unique\n",
    )
    .unwrap();

    let duplicates = |d: &std::path::Path| assertion(d, "duplicates_crm_opportunities_opportunity_id");
    let (code, log) = build_logged(d, &[]);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(r#"tables=["\"crm\".\"opportunities\"[\"opportunity_id\"]"]"#), "{log}");
    let built = duplicates(d);
    assert_eq!(
        (built["status"].as_str(), built["rows_checked"].as_u64(), built["failing_rows"].as_u64()),
        (Some("warn"), Some(5), Some(2)),
        "{built}"
    );
    // The warning's rows are read once the view is done, which its readers wait for, not before.
    let at = |line: &str| log.find(line).unwrap_or_else(|| panic!("no `{line}` in {log}"));
    assert!(
        at("node finished node=stg_opportunities")
            < at("failing rows check=duplicates_crm_opportunities_opportunity_id"),
        "{log}"
    );
    assert_eq!(built["sample"].as_array().map(Vec::len), Some(2), "{built}");
    let stored =
        std::path::PathBuf::from(built["failing_rows_path"].as_str().unwrap().trim_start_matches("file://"));
    let mut failing = rows(&read_parquet(&stored));
    failing.sort();
    assert_eq!(
        failing,
        [
            "opportunity_id=o1, account_id=a1, amount=1000.5000",
            "opportunity_id=o1, account_id=a1, amount=1000.5000",
            "opportunity_id=o2, account_id=a1, amount=250.0000",
            "opportunity_id=o2, account_id=a1, amount=260.0000",
        ]
    );
    // One row per key, the larger amount winning: 1000.50 + 260.00 + 9.99.
    assert_eq!(rows(&read_delta(&d.join("warehouse/opportunity_total"))), ["n=3, total=1270.4900"]);

    tally(d, &["test"]).assert_code(0);
    let tested = duplicates(d);
    assert_eq!(
        (tested["rows_checked"].as_u64(), tested["failing_rows"].as_u64()),
        (Some(5), Some(2)),
        "{tested}"
    );

    let (code, log) = build_logged(d, &["--warn-error"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(!log.contains("tables=[\"\\\"crm"), "{log}");
    assert_eq!(result_of(&run_results(d), "stg_opportunities")["status"], "skipped");

    // A checked view that does not sort the source has it queried instead;
    // so does a checked view that fails, once the run has ended, and, in a
    // slot of its own, a source no checked view reads. Same answer each time.
    let view = d.join("models/stg_opportunities.sql");
    let checked = "models:\n  - name: stg_opportunities\n    data_tests:\n      - row_count: {min: 1}\n";
    let all = "select * from {{ source('crm', 'opportunities') }}";
    let failing = "select opportunity_id, amount * cast(opportunity_id as int) as amount from {{ source('crm', 'opportunities') }}";
    for (sql, yml, code) in [(all, checked, 0), (failing, checked, 1), (all, "models: []\n", 0)] {
        std::fs::write(&view, format!("{{{{ config(materialized='view') }}}}\n{sql}\n")).unwrap();
        std::fs::write(d.join("models/models.yml"), yml).unwrap();
        let (exit, log) = build_logged(d, &[]);
        assert_eq!(exit, Some(code), "{log}");
        assert!(!log.contains("tables=[\"\\\"crm"), "{log}");
        let queried = duplicates(d);
        assert_eq!(
            (queried["rows_checked"].as_u64(), queried["failing_rows"].as_u64()),
            (Some(5), Some(2)),
            "{sql}: {queried}"
        );
    }
}

/// A staged view's rows are released once every node that reads them has
/// finished: its readers, and the models whose checks read it. A view that
/// a singular test reads is kept to the end, when those tests run.
#[test]
fn a_staged_views_rows_are_released_after_its_last_reader() {
    let dir = project(SOURCES);
    let d = dir.path();
    let view = "{{ config(materialized='view') }}\nselect * from {{ source('crm', 'opportunities') }}\n";
    std::fs::write(d.join("models/stg_opps.sql"), view).unwrap();
    std::fs::write(d.join("models/opp_total.sql"), "select count(*) as n from {{ ref('stg_opps') }}\n")
        .unwrap();
    // Named to sort after opp_total: with one thread it runs last, its
    // check reading stg_opps after every reader of stg_opps's rows is done.
    std::fs::write(d.join("models/xref_ids.sql"), "select 'o1' as opportunity_id\n").unwrap();
    std::fs::write(
        d.join("models/stg_accounts.sql"),
        "{{ config(materialized='view') }}\nselect * from {{ source('crm', 'accounts') }}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("models/models.yml"),
        "models:
  - name: stg_opps
    data_tests:
      - row_count: {min: 1}
  - name: stg_accounts
    data_tests:
      - row_count: {min: 1}
  - name: xref_ids
    columns:
      - name: opportunity_id
        data_tests:
          - relationships: {to: ref('stg_opps'), field: opportunity_id}
",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("tests")).unwrap();
    std::fs::write(
        d.join("tests/accounts_exist.sql"),
        "select 1 as missing from (select count(*) as n from {{ ref('stg_accounts') }}) c where n = 0\n",
    )
    .unwrap();

    let (exit, log) = build_logged(d, &["--threads", "1"]);
    assert_eq!(exit, Some(0), "{log}");
    let at = |needle: &str| log.lines().position(|l| l.contains(needle));
    let released =
        at("released view=\"stg_opps\"").unwrap_or_else(|| panic!("stg_opps was never released\n{log}"));
    for reader in ["opp_total", "xref_ids"] {
        let finished = at(&format!("node finished node={reader} ")).unwrap();
        assert!(finished < released, "stg_opps released before {reader} finished\n{log}");
    }
    assert_eq!(at("released view=\"stg_accounts\""), None, "{log}");
    assert_eq!(assertion(d, "accounts_exist")["status"], "pass");
    assert_eq!(assertion(d, "relationships_xref_ids_opportunity_id")["status"], "pass");
    assert_eq!(rows(&read_delta(&d.join("warehouse/opp_total"))), ["n=3"]);
}

/// A source whose footers prove its verdict frees its readers at once; its
/// scans, which only count what is reported, run when no node is ready:
/// with one thread, after every model. What they count is still reported.
#[test]
fn a_proven_sources_scans_wait_for_the_nodes() {
    // opportunities: o3 has no account; 2 of 3 complete passes min_ratio 0.5,
    // and the footers' null count (1) proves it.
    let sources = checked_sources().replace("min_ratio: 1}", "min_ratio: 0.5}");
    let dir = project(&sources);
    let d = dir.path();
    let (exit, log) = build_logged(d, &["--threads", "1"]);
    assert_eq!(exit, Some(0), "{log}");
    let at = |needle: &str| log.lines().position(|l| l.contains(needle));
    let proven = at("footers relation=\"crm.opportunities\" proven=true")
        .unwrap_or_else(|| panic!("not proven\n{log}"));
    let built = at("node finished node=account_pipeline ").unwrap();
    let scanned = at("fused checks relation=\"\\\"crm\\\".\\\"opportunities\\\"\"")
        .unwrap_or_else(|| panic!("never scanned\n{log}"));
    assert!(proven < built && built < scanned, "proof {proven}, model {built}, scan {scanned}\n{log}");
    let completeness = assertion(d, "completeness_crm_opportunities_account_id");
    assert_eq!(
        (completeness["status"].as_str(), completeness["failing_rows"].as_u64()),
        (Some("pass"), Some(1)),
        "{completeness}"
    );
}

/// The last run's result of the check called `name`.
fn assertion(d: &std::path::Path, name: &str) -> serde_json::Value {
    let r = run_results(d);
    r["assertions"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap().clone()
}
