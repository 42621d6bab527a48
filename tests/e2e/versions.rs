//! Published versions: time travel with `show --version/--as-of`, `gc`
//! removing orphans and expired versions, and the one-writer lease.

use crate::common::*;

fn csv(d: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["show", "orders", "--format", "csv", "--limit", "0"];
    all.extend_from_slice(args);
    let run = tally(d, &all);
    run.assert_code(0);
    let mut lines: Vec<String> = run.stdout.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn time_travel_gc_and_the_write_lease() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    tally(d, &["build", "-q"]).assert_code(0);
    let v0 = csv(d, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A sixth order: version 1 of orders has one row more.
    let seed = d.join("seeds/raw_orders.csv");
    let text = std::fs::read_to_string(&seed).unwrap();
    std::fs::write(&seed, format!("{}6,1,2018-01-07,completed\n", text)).unwrap();
    let payments = d.join("seeds/raw_payments.csv");
    let text = std::fs::read_to_string(&payments).unwrap();
    std::fs::write(&payments, format!("{}6,6,coupon,500\n", text)).unwrap();
    tally(d, &["build", "-q"]).assert_code(0);
    assert_eq!(
        run_results(d)["results"].as_array().unwrap().iter().find(|r| r["name"] == "orders").unwrap()["version"],
        1
    );

    let v1 = csv(d, &[]);
    assert_eq!((v0.len(), v1.len()), (5, 6));
    assert_eq!(csv(d, &["--version", "0"]), v0);
    assert_eq!(csv(d, &["--as-of", &between]), v0);
    let missing = tally(d, &["show", "orders", "--version", "7"]);
    missing.assert_code(2);
    assert!(missing.stderr.contains("`orders` has no such version"), "{}", missing.stderr);
    let view = tally(d, &["show", "stg_orders", "--version", "0"]);
    view.assert_code(2);
    assert!(view.stderr.contains("only tables keep versions"), "{}", view.stderr);

    // A killed run's leftovers: a data file no version references.
    let orphan = d.join("warehouse/orders/part-00000-orphan.zstd.parquet");
    std::fs::copy(delta_files(&d.join("warehouse/orders"))[0].clone(), &orphan).unwrap();
    let dry = tally(d, &["gc", "--retain-hours", "0", "--dry-run"]);
    dry.assert_code(0);
    assert!(dry.stdout.contains("orders: would remove 2 data files"), "{}", dry.stdout);
    assert!(orphan.exists());
    let gc = tally(d, &["gc", "--retain-hours", "0"]);
    gc.assert_code(0);
    assert!(gc.stdout.contains("orders: removed 2 data files"), "{}", gc.stdout);
    assert!(!orphan.exists());
    assert_eq!(csv(d, &[]), v1, "the current version is untouched");

    // A killed build's scratch folder goes; a build's that may still be running stays.
    let (dead, live) = (
        d.join("target/scratch/20200101T000000Z-dead00/stg_orders"),
        d.join(format!("target/scratch/{}-live00", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"))),
    );
    for dir in [&dead, &live] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let gc = tally(d, &["gc", "--retain-hours", "0"]);
    gc.assert_code(0);
    assert!(gc.stdout.contains("scratch: removed the folders of 1 interrupted builds"), "{}", gc.stdout);
    assert!(!dead.parent().unwrap().exists() && live.exists());

    // The write lease: a live holder stops a second build; a dead one's is taken over.
    let lease = d.join("warehouse/_tally/lease.json");
    let hold = |pid: u32| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        let until = chrono::Utc::now() + chrono::Duration::minutes(5);
        let body = serde_json::json!({"run_id": "20261123T000000Z-abcdef", "host": host, "pid": pid, "command": "build",
            "acquired_at": chrono::Utc::now(), "expires_at": until});
        std::fs::write(&lease, body.to_string()).unwrap();
    };
    hold(std::process::id());
    let busy = tally(d, &["build", "-q"]);
    busy.assert_code(3);
    assert!(
        busy.stderr.contains("is being written by `tally build` run 20261123T000000Z-abcdef"),
        "{}",
        busy.stderr
    );
    hold(u32::MAX - 1); // no such process
    tally(d, &["build", "-q"]).assert_code(0);
    assert!(!lease.exists(), "released after the run");
}

/// `memory://`: the whole build, gate and scorecard included, in one process's memory.
#[test]
fn memory_warehouse_builds_in_process() {
    let dir = fixture("dbt_style");
    let d = dir.path();
    std::fs::create_dir_all(d.join("profiles")).unwrap();
    std::fs::write(d.join("profiles/profiles.yml"), "jaffle:\n  target: mem\n  outputs:\n    mem:\n      type: datafusion\n      warehouse: memory:///wh\n").unwrap();
    let run = tally(d, &["build"]);
    run.assert_code(0);
    assert!(run.stdout.contains("8 ok, 0 error, 0 skipped"), "{}", run.stdout);
    assert!(run.stdout.contains("Assertions: 7 pass, 0 warn, 0 fail, 0 error"), "{}", run.stdout);
    assert!(!d.join("warehouse").exists(), "nothing was written to disk");
    let r = run_results(d);
    assert_eq!(result_of(&r, "orders")["rows"], 5);
}
