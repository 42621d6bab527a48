//! Nightly jobs get killed. `kill -9` a build at 25 random moments, over two
//! alternating inputs: after each kill every published table is exactly one
//! complete build's content (that of input A or of input B, never a mix or a
//! part), and the next build completes without any manual cleanup (the dead
//! run's lease is taken over).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally::generate::{GenConfig, Rng, generate, write};

use crate::common::*;
use crate::revenue::reference_project;

const TABLES: [&str; 8] = [
    "int_as_of",
    "int_fx_rates_monthly",
    "customer_mrr_monthly",
    "arr_waterfall_monthly",
    "retention_monthly",
    "pipeline_coverage_quarterly",
    "funnel_conversion_monthly",
    "unit_economics_quarterly",
];

/// Every table's rows (sorted), or None when it was never published.
fn snapshot(d: &Path) -> BTreeMap<&'static str, Option<Vec<String>>> {
    TABLES
        .iter()
        .map(|t| {
            let dir = d.join("warehouse").join(t);
            (*t, dir.join("_delta_log").exists().then(|| rows(&read_delta(&dir))))
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_never_exposes_a_partial_table() {
    let project = reference_project();
    let d = project.path();
    let raw = tempfile::tempdir().unwrap();
    let vars = |input: &str| format!("{{raw_root: '{}'}}", raw.path().join(input).display());
    // Two inputs: the same business a month apart (seed 7: billing is fresh
    // enough for the executive gate at both dates at this small scale).
    for (input, as_of) in [("a", (2025, 5, 31)), ("b", (2025, 6, 30))] {
        let cfg = GenConfig {
            scale: 0.02,
            seed: 7,
            as_of: chrono::NaiveDate::from_ymd_opt(as_of.0, as_of.1, as_of.2).unwrap(),
            ..GenConfig::default()
        }
        .without_defects();
        write(&generate(&cfg), &raw.path().join(input)).unwrap();
    }
    // What a complete build of each input publishes, and how long one takes.
    let mut complete = BTreeMap::new();
    let mut shortest = Duration::MAX;
    for input in ["a", "b"] {
        let start = Instant::now();
        tally(d, &["build", "-q", "--vars", &vars(input)]).assert_code(0);
        shortest = shortest.min(start.elapsed());
        complete.insert(input, snapshot(d));
    }
    assert_ne!(complete["a"], complete["b"]);

    let mut rng = Rng::new(2026);
    let (mut killed, mut mid_dag) = (0, 0);
    for round in 0..25 {
        let input = if round % 2 == 0 { "a" } else { "b" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .env("TALLY_ALLOW_ROOT", allowed_root())
            .args(["build", "-q", "--vars", &vars(input), "--project-dir"])
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Within a build's duration, so that most kills land while it runs
        // (how many depends on the machine's load: the floor below is loose).
        let at = Duration::from_micros(rng.range(0, shortest.as_micros() as i64) as u64);
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        if child.wait().unwrap().code().is_none() {
            killed += 1;
        }
        let now = snapshot(d);
        for (table, rows) in &now {
            let whole = *rows == complete["a"][table] || *rows == complete["b"][table];
            assert!(whole, "round {round}, killed after {at:?}: {table} is neither build's content");
        }
        if now != complete["a"] && now != complete["b"] {
            mid_dag += 1; // some tables at A's content, others at B's
        }
    }
    eprintln!("{killed} of 25 builds killed before they finished, {mid_dag} in the middle of the DAG");
    assert!(
        killed >= 12 && mid_dag >= 3,
        "the kills must land while builds run: {killed} killed, {mid_dag} mid-DAG"
    );
    // The next build completes, and publishes exactly input B's tables.
    tally(d, &["build", "-q", "--vars", &vars("b")]).assert_code(0);
    assert_eq!(snapshot(d), complete["b"]);

    // Two builds started together on one target: one runs, the other stops
    // at once with exit code 3 and says who holds the target.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .env("TALLY_ALLOW_ROOT", allowed_root())
            .args(["build", "-q", "--vars", &vars("a"), "--project-dir"])
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let mut codes: Vec<(i32, String)> = [first, second]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    codes.sort();
    assert_eq!((codes[0].0, codes[1].0), (0, 3), "{codes:?}");
    assert!(codes[1].1.contains("is being written by `tally build` run"), "{}", codes[1].1);
    assert_eq!(snapshot(d), complete["a"]);
}
