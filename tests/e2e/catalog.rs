//! The bad-input catalog: every case in `tests_data/errors/<category>/<case>.txt`
//! is a small project (written out from the file) and a command, with what
//! tally must answer: the exit code, the `file:line` and key words of the
//! message, and nothing it must leak or change. The full stderr of each case
//! is snapshotted (`snapshots/catalog/`), so a change in wording is reviewed.
//!
//! A case file:
//!
//! ```text
//! # what the case is (first line)
//! args: ["build"]                 optional, JSON; the default is ["build"]
//! exit: 2
//! says: models/schema.yml:6:      each must appear in stderr or stdout (repeatable)
//! absent: hunter2                 must appear in no output and no file of the project
//! env: NAME=value                 (repeatable)
//! setup: <step>                   before the command, in order (see `setup`)
//! unchanged: true                 every table's Delta log is as the setup's build left it
//! -- tally_project.yml --
//! name: p
//! -- models/m.sql --
//! select 1 as id
//! ```
//! A file header ending in `(escaped) --` has `\xNN` escapes decoded (for
//! bytes that are not UTF-8). Every case also checks: no panic, a sentinel
//! file beside the project survives, and a project error (exit 2) made no
//! warehouse unless the setup built one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::common::*;

#[derive(Debug, Default)]
struct Case {
    name: String,
    about: String,
    args: Vec<String>,
    exit: i32,
    says: Vec<String>,
    absent: Vec<String>,
    env: Vec<(String, String)>,
    setup: Vec<String>,
    unchanged: bool,
    files: Vec<(String, Vec<u8>)>,
}

fn parse_case(name: String, text: &str) -> Case {
    let mut case = Case { name, args: vec!["build".into()], exit: -1, ..Case::default() };
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next_if(|l| !l.starts_with("-- ")) {
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(about) = line.strip_prefix("# ") {
            case.about = about.to_string();
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (key, value) =
            line.split_once(": ").unwrap_or_else(|| panic!("{}: bad header line {line:?}", case.name));
        match key {
            "args" => {
                case.args = serde_json::from_str(value).unwrap_or_else(|e| panic!("{}: args: {e}", case.name))
            }
            "exit" => case.exit = value.parse().unwrap(),
            "says" => case.says.push(value.to_string()),
            "absent" => case.absent.push(value.to_string()),
            "env" => {
                let (k, v) = value.split_once('=').unwrap();
                case.env.push((k.to_string(), v.to_string()));
            }
            "setup" => case.setup.push(value.to_string()),
            "unchanged" => case.unchanged = value == "true",
            other => panic!("{}: unknown header `{other}`", case.name),
        }
    }
    let mut current: Option<(String, bool, Vec<u8>)> = None;
    for line in lines {
        if let Some(header) = line.trim_end().strip_prefix("-- ").and_then(|h| h.strip_suffix(" --")) {
            case.files.extend(current.take().map(|(p, esc, b)| (p, if esc { unescape(&b) } else { b })));
            let (path, escaped) = match header.strip_suffix(" (escaped)") {
                Some(p) => (p, true),
                None => (header, false),
            };
            current = Some((path.to_string(), escaped, Vec::new()));
        } else if let Some((_, _, body)) = current.as_mut() {
            body.extend_from_slice(line.as_bytes());
        }
    }
    case.files.extend(current.map(|(p, esc, b)| (p, if esc { unescape(&b) } else { b })));
    assert!(case.exit >= 0, "{}: no `exit:`", case.name);
    case
}

fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"\\x")
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 2..i + 4]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn cases() -> Vec<Case> {
    let root = repo_root().join("tests_data/errors");
    let mut out = Vec::new();
    for cat in sorted_dir(&root) {
        if !cat.is_dir() || cat.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
            continue;
        }
        for f in sorted_dir(&cat) {
            if f.extension().is_some_and(|e| e == "txt") {
                let name = format!(
                    "{}__{}",
                    cat.file_name().unwrap().to_string_lossy(),
                    f.file_stem().unwrap().to_string_lossy()
                );
                let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
                out.push(parse_case(name, &text));
            }
        }
    }
    out
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Mounts made by a case, undone however it ends.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

enum Outcome {
    Ran(String),
    Skipped(String),
}

/// A valid Parquet file, zstd-compressed: id bigint, name varchar, 2,000 rows.
fn write_parquet(path: &Path) {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::basic::{Compression, ZstdLevel};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (1..=2000).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("name-{}", i * 7919 % 10007)).collect();
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn run_case(case: &Case) -> Result<Outcome, String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let dir = root.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(root.join("sentinel"), "must survive").unwrap();
    for (path, body) in &case.files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let run = |args: &[String]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally"));
        cmd.args(args)
            .arg("--project-dir")
            .arg(&dir)
            .env("NO_COLOR", "1")
            .env_remove("TALLY_TARGET")
            .env_remove("RUST_BACKTRACE");
        for (k, v) in &case.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let mut mounts = Mounts::default();
    let mut built: Option<BTreeMap<String, Vec<String>>> = None;
    for step in &case.setup {
        let words: Vec<&str> = step.split_whitespace().collect();
        let at = |p: &str| dir.join(p);
        match words.as_slice() {
            ["parquet", p] => write_parquet(&at(p)),
            ["corrupt", p] => {
                // Invert the first 8 bytes of the last column's first data
                // page (its header), keeping the footer intact. (A flip inside
                // a page's compressed payload can decode to other values:
                // without page checksums no reader can tell; 35 of 300 such
                // flips in a zstd file did, see the closing note of issue 28.)
                use parquet::file::reader::FileReader;
                let reader =
                    parquet::file::reader::SerializedFileReader::new(std::fs::File::open(at(p)).unwrap())
                        .unwrap();
                let rg = reader.metadata().row_group(0);
                let col = rg.column(rg.num_columns() - 1);
                let start = col.data_page_offset() as usize;
                let mut b = std::fs::read(at(p)).unwrap();
                for x in &mut b[start..start + 8] {
                    *x = !*x;
                }
                std::fs::write(at(p), b).unwrap();
            }
            ["truncate", p, n] => {
                let b = std::fs::read(at(p)).unwrap();
                std::fs::write(at(p), &b[..n.parse::<usize>().unwrap().min(b.len())]).unwrap();
            }
            ["copy", from, to] => {
                std::fs::create_dir_all(at(to).parent().unwrap()).unwrap();
                std::fs::copy(repo_root().join("tests_data/errors/_fixtures").join(from), at(to)).unwrap();
            }
            ["outside", p, content @ ..] => {
                let p = root.join(p);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, content.join(" ") + "\n").unwrap();
            }
            ["symlink", link, target] => {
                std::fs::create_dir_all(at(link).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, at(link)).unwrap();
            }
            ["build", args @ ..] => {
                let mut a = vec!["build".to_string()];
                a.extend(args.iter().map(|s| s.to_string()));
                let r = run(&a);
                if r.code != 0 {
                    return Err(format!("{}: the setup build failed:\n{}", case.name, r.stderr));
                }
                built = Some(delta_logs(&dir.join("warehouse")));
            }
            ["mount-tmpfs", p, size] => {
                std::fs::create_dir_all(at(p)).unwrap();
                let ok = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                    .arg(at(p))
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    return Ok(Outcome::Skipped(format!("cannot mount a tmpfs at {p} (needs root)")));
                }
                mounts.0.push(at(p));
            }
            ["remount-readonly", p] => {
                let ok = Command::new("mount")
                    .args(["-o", "remount,ro"])
                    .arg(at(p))
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    return Ok(Outcome::Skipped(format!("cannot remount {p} read-only")));
                }
            }
            ["copy-dir", from, to] => copy_dir(&at(from), &at(to)),
            ["write", p, content @ ..] => std::fs::write(at(p), content.join(" ")).unwrap(),
            other => panic!("{}: unknown setup step {other:?}", case.name),
        }
    }
    let r = run(&case.args);
    // Paths as DataFusion and object_store print them too (without the leading `/`).
    let shown = |s: &str| {
        let (d, t) = (dir.display().to_string(), root.display().to_string());
        s.replace(&d, "[PROJECT]")
            .replace(&d[1..], "[PROJECT]")
            .replace(&t, "[TMP]")
            .replace(&t[1..], "[TMP]")
    };
    let (stdout, stderr) = (shown(&r.stdout), shown(&r.stderr));
    let said = format!("{stderr}\n{stdout}");
    let ctx = format!("{} ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}", case.name, case.about);
    let mut failed = Vec::new();
    if r.code != case.exit {
        failed.push(format!("exit code {} (expected {})", r.code, case.exit));
    }
    if r.stderr.contains("panicked at") {
        failed.push("a panic".to_string());
    }
    for want in &case.says {
        if !said.contains(want.as_str()) {
            failed.push(format!("the output lacks {want:?}"));
        }
    }
    for secret in &case.absent {
        if r.stderr.contains(secret.as_str()) || r.stdout.contains(secret.as_str()) {
            failed.push(format!("{secret:?} printed"));
        }
        for f in walk_files(&dir) {
            let b = std::fs::read(&f).unwrap_or_default();
            if b.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                failed.push(format!("{secret:?} written to {}", f.display()));
            }
        }
    }
    if !(root.join("sentinel").exists() && dir.exists()) {
        failed.push("the project or the folder beside it was deleted".to_string());
    }
    match &built {
        Some(before) if case.unchanged && &delta_logs(&dir.join("warehouse")) != before => {
            failed.push("a table changed".to_string())
        }
        None if case.exit == 2 && dir.join("warehouse").exists() => {
            failed.push("a project error made a warehouse".to_string())
        }
        _ => {}
    }
    drop(mounts);
    if std::env::var_os("TALLY_CATALOG_KEEP").is_some() {
        // For a maintainer reading a case's files: the project stays on disk.
        eprintln!("catalog: {} kept in {}", case.name, tmp.keep().display());
    }
    if !failed.is_empty() {
        return Err(format!("{}: {}\n{ctx}", case.name, failed.join("; ")));
    }
    Ok(Outcome::Ran(format!("exit: {}\n--- stderr\n{stderr}\n--- stdout\n{stdout}", r.code)))
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn bad_input_catalog() {
    let cases = cases();
    assert!(cases.len() >= 80, "the catalog has {} cases", cases.len());
    let mut by_category: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/catalog");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[RUN_ID]");
    settings.add_filter(r"\d+\.\d+ ?s\b", "[T]");
    settings.add_filter(r"tally \d+\.\d+\.\d+", "tally [VERSION]");
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[UUID]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    // DataFusion's suggestion for an unknown function is not stable between runs.
    settings.add_filter(r"Did you mean '[^']*'\?", "Did you mean [..]?");
    settings.add_filter(r"\b\d+\.\d{2}\b", "[T]");
    let _guard = settings.bind_to_scope();
    let (mut failures, mut shown_all) = (Vec::new(), Vec::new());
    for case in &cases {
        let category = case.name.split("__").next().unwrap_or_default().to_string();
        let entry = by_category.entry(category).or_default();
        match run_case(case) {
            Ok(Outcome::Ran(shown)) => {
                entry.0 += 1;
                shown_all.push((case, shown));
            }
            Ok(Outcome::Skipped(why)) => {
                entry.1 += 1;
                eprintln!("catalog: {} skipped: {why}", case.name);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    for (case, shown) in shown_all {
        insta::assert_snapshot!(case.name.clone(), shown, &case.about);
    }
    for (cat, (ran, skipped)) in &by_category {
        eprintln!("catalog: {cat}: {ran} ran, {skipped} skipped");
    }
}
