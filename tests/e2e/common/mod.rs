//! Helpers for end-to-end tests: copy a fixture project, run the real binary,
//! and read published Delta tables back *without tally* (log JSON + parquet crate).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh copy of `tests_data/projects/<name>` in a temp dir.
pub fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&repo_root().join("tests_data/projects").join(name), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The fixtures' raw data lives outside the projects (temp dirs, the
/// committed sample): the tests allow those roots as an operator would
/// (`TALLY_ALLOW_ROOT`, a `:`-separated list).
pub fn allowed_root() -> String {
    format!("{}:{}", std::env::temp_dir().display(), repo_root().join("tests_data").display())
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// Run `tally <args> --project-dir <dir>`.
pub fn tally(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_tally"))
        .env("TALLY_ALLOW_ROOT", allowed_root())
        .args(args)
        .arg("--project-dir")
        .arg(dir)
        .env("NO_COLOR", "1")
        .env_remove("TALLY_TARGET")
        .output()
        .expect("run tally");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `tally build` with `args` and debug logging: its exit code and its log.
pub fn build_logged(d: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .env("TALLY_ALLOW_ROOT", allowed_root())
        .arg("build")
        .args(args)
        .arg("--project-dir")
        .arg(d)
        .env("TALLY_LOG", "tally=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The active files of the Delta table at `table_dir`, replaying `_delta_log/*.json`.
pub fn delta_files(table_dir: &Path) -> Vec<PathBuf> {
    let log = table_dir.join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    let texts: Vec<String> = commits.iter().map(|c| std::fs::read_to_string(c).unwrap()).collect();
    active_files(&texts).into_iter().map(|p| table_dir.join(p)).collect()
}

/// Replay Delta log entries (in version order): the data files still added.
pub fn active_files(commits: &[String]) -> BTreeSet<String> {
    let mut active = BTreeSet::new();
    for line in commits.iter().flat_map(|c| c.lines()) {
        let action: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(p) = action.pointer("/add/path").and_then(|p| p.as_str()) {
            active.insert(p.to_string());
        }
        if let Some(p) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
            active.remove(p);
        }
    }
    active
}

/// All rows of the Delta table at `table_dir`, read with the parquet crate.
pub fn read_delta(table_dir: &Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for f in delta_files(table_dir) {
        out.extend(read_parquet(&f));
    }
    out
}

/// All rows of one Parquet file.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap()).collect()
}

/// Rows as strings, `col=value` joined by `, `, sorted: easy to compare by eye.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for row in 0..b.num_rows() {
            let cells: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(f, fmt)| format!("{}={}", f.name(), fmt.value(row)))
                .collect();
            out.push(cells.join(", "));
        }
    }
    out.sort();
    out
}

pub fn run_results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("target/run_results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The result entry for `name` in run_results.json.
pub fn result_of<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

/// Tables under `warehouse` -> the names of their Delta log commits, sorted:
/// equal before and after a run that must change no table.
pub fn delta_logs(warehouse: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(warehouse) else { return out };
    for e in entries.flatten() {
        if let Ok(files) = std::fs::read_dir(e.path().join("_delta_log")) {
            let mut names: Vec<String> = files
                .flatten()
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect();
            names.sort();
            out.insert(e.file_name().to_string_lossy().into_owned(), names);
        }
    }
    out
}
