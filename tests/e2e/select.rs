use crate::common::*;

fn ls(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut full = vec!["ls"];
    full.extend_from_slice(args);
    let run = tally(dir, &full);
    run.assert_code(0);
    run.stdout.lines().map(str::to_string).collect()
}

#[test]
fn selection_syntax() {
    let dir = fixture("diamond");
    let d = dir.path();
    // Everything, in DAG order.
    assert_eq!(ls(d, &[]), ["orders", "stg_orders", "big_orders", "by_customer", "by_month", "report"]);
    assert_eq!(ls(d, &["-s", "+by_customer"]), ["orders", "stg_orders", "by_customer"]);
    assert_eq!(ls(d, &["-s", "by_month+"]), ["by_month", "report"]);
    assert_eq!(ls(d, &["-s", "tag:nightly"]), ["report"]);
    assert_eq!(ls(d, &["-s", "path:models/staging"]), ["stg_orders"]);
    assert_eq!(ls(d, &["-s", "path:models/marts/by_month.sql"]), ["by_month"]);
    assert_eq!(ls(d, &["-s", "by_customer by_month"]), ["by_customer", "by_month"]);
    assert_eq!(ls(d, &["-s", "by_*"]), ["by_customer", "by_month"]);
    assert_eq!(
        ls(d, &["-s", "+report", "--exclude", "tag:staging orders"]),
        ["big_orders", "by_customer", "by_month", "report"]
    );
    assert_eq!(
        ls(d, &["-s", "stg_orders+", "--exclude", "report"]),
        ["stg_orders", "big_orders", "by_customer", "by_month"]
    );
    assert_eq!(ls(d, &["-s", "by_month", "--output", "path"]), ["models/marts/by_month.sql"]);
}

/// Running a selection reads unselected parents from the warehouse, and says
/// clearly when a parent was never built.
#[test]
fn selected_run_uses_published_parents() {
    let dir = fixture("diamond");
    let run = tally(dir.path(), &["run", "-s", "report"]);
    run.assert_code(1);
    assert!(run.stdout.contains("has never been built on this target; select it too"), "{}", run.stdout);
    tally(dir.path(), &["run", "-s", "+by_customer +by_month"]).assert_code(0);
    let run = tally(dir.path(), &["run", "-s", "report"]);
    run.assert_code(0);
    assert_eq!(
        rows(&read_delta(&dir.path().join("warehouse/report"))),
        ["kind=big_orders, n=2", "kind=customers, n=30", "kind=months, n=30"]
    );
}
