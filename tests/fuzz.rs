//! Fuzzing the loaders and the renderer: inputs from a corpus (the reference
//! project's own files and `tests_data/fuzz/`), mutated at random — bytes
//! flipped, spans deleted or repeated, YAML and Jinja tokens inserted,
//! inputs spliced — and fed to the project loader (with the profile) and to
//! the renderer. A crash is a panic, or one input taking longer than
//! `MAX_EXEC`; every other answer, an error included, is fine. Crashing
//! inputs are written to `target/fuzz-crashes/<target>/`.
//!
//! Why not cargo-fuzz: it needs nightly's sanitizer flags and a second,
//! instrumented build of DataFusion (as long as CI's whole release build),
//! and this machine has one stable toolchain. The mutator has no coverage
//! feedback; its dictionaries stand in for it.
//!
//! `TALLY_FUZZ_SECONDS` (default 3) is the time per target; CI runs 60.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tally::generate::Rng;
use tally::render::{Renderer, TargetInfo};

const MAX_EXEC: Duration = Duration::from_secs(5);

const YAML_TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    - ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!map ",
    "~",
    "null",
    "\t",
    "#",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
    "1e999",
    "-1",
    "0x10",
    "true",
    "name: ",
    "tests:\n  - ",
    "columns:",
    "config: {severity: ",
    "freshness: {warn_after: {count: ",
    "\u{feff}",
    "\\xff",
    "{{ var('x') }}",
    "${HOME}",
    "${",
];

const JINJA_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{%- ",
    " -%}",
    "ref('m')",
    "ref(",
    "source('raw', 't')",
    "var('x')",
    "var('x', 1)",
    "env_var('HOME')",
    "config(materialized='table')",
    "{% for i in range(10) %}",
    "{% endfor %}",
    "{% if true %}",
    "{% else %}",
    "{% endif %}",
    "{% set x = 1 %}",
    "{% macro f(a) %}",
    "{% endmacro %}",
    "f(1)",
    "| upper",
    "| join(',')",
    "~",
    "*",
    "**",
    "//",
    "[",
    "]",
    "(",
    ")",
    "'",
    "\"",
    "\n",
    "loop.index",
    "this",
    "target.name",
    "is_incremental()",
    "{% raw %}",
    "{% endraw %}",
    "{% call f() %}",
    "{% endcall %}",
    "caller()",
    "range(100000)",
    "'x' * 1000",
    "{% include 'x' %}",
    "{% extends 'x' %}",
    "{% block b %}",
    "{% endblock %}",
    "self",
    "namespace()",
];

struct Mutator {
    rng: Rng,
}

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.rng.next_u64() % n as u64) as usize }
    }

    /// 1-4 random edits of `input` (and sometimes a splice with `other`).
    fn mutate(&mut self, input: &[u8], other: &[u8], tokens: &[&str]) -> Vec<u8> {
        let mut b = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(b.len() + 1);
            match self.below(7) {
                0 if !b.is_empty() => {
                    let i = self.below(b.len());
                    b[i] ^= 1 << self.below(8);
                }
                1 if !b.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(b.len());
                    b.drain(at.min(end)..end);
                }
                2 => {
                    let end = (at + self.below(32)).min(b.len());
                    let span = b[at..end].to_vec();
                    for _ in 0..1 + self.below(8) {
                        b.splice(at..at, span.iter().copied());
                    }
                }
                3 if !other.is_empty() => {
                    let from = self.below(other.len());
                    let end = (from + self.below(200)).min(other.len());
                    b.splice(at..at, other[from..end].iter().copied());
                }
                4 => {
                    let byte = [0u8, 0xff, b'\n', b'\r', b' ', b'"', b'\\'][self.below(7)];
                    b.insert(at, byte);
                }
                _ => {
                    let t = tokens[self.below(tokens.len())];
                    b.splice(at..at, t.bytes());
                }
            }
        }
        b.truncate(1 << 16);
        b
    }
}

fn corpus(patterns: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out: Vec<Vec<u8>> =
        patterns.iter().flat_map(|(dir, ext)| files_under(&root.join(dir), ext)).map(|(_, b)| b).collect();
    assert!(!out.is_empty(), "an empty corpus for {patterns:?}");
    out
}

struct Report {
    executions: u64,
    /// Inputs the target accepted (loaded, rendered): how deep the mutants get.
    accepted: u64,
    crashes: Vec<String>,
}

/// Run `exec` on mutated corpus inputs for the time budget.
fn fuzz(target: &str, seeds: &[Vec<u8>], tokens: &[&str], mut exec: impl FnMut(&[u8]) -> bool) -> Report {
    let seconds: u64 = std::env::var("TALLY_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut m = Mutator {
        rng: Rng::new(std::env::var("TALLY_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x7a11)),
    };
    let crash_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes").join(target);
    let mut report = Report { executions: 0, accepted: 0, crashes: Vec::new() };
    // Each seed as it is first, then mutants of mutants (accepted ones kept more often: a cheap stand-in for coverage).
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    let mut i = 0usize;
    while Instant::now() < deadline {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let a = m.below(pool.len());
            let b = m.below(pool.len());
            m.mutate(&pool[a], &pool[b], tokens)
        };
        i += 1;
        let start = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| exec(&input)));
        let took = start.elapsed();
        report.executions += 1;
        let accepted = matches!(result, Ok(true));
        let crash = match result {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(_) if took > MAX_EXEC => Some(format!("took {:.1} s", took.as_secs_f64())),
            Ok(accepted) => {
                report.accepted += u64::from(accepted);
                None
            }
        };
        if let Some(why) = crash {
            std::fs::create_dir_all(&crash_dir).unwrap();
            let file = crash_dir.join(format!("crash-{}", report.crashes.len()));
            std::fs::write(&file, &input).unwrap();
            report.crashes.push(format!("{why} ({})", file.display()));
        } else if pool.len() < 4096 && (if accepted { m.below(4) == 0 } else { m.below(32) == 0 }) {
            // Accepted mutants breed more often: they reach past the parser.
            pool.push(input);
        }
    }
    eprintln!(
        "fuzz {target}: {} executions in {seconds} s ({} accepted), {} crashes",
        report.executions,
        report.accepted,
        report.crashes.len()
    );
    report
}

const PROJECT: &str = "name: p\nvars:\n  x: 1\nmodels:\n  p:\n    +materialized: view\n";
const SCHEMA: &str =
    "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: id\n        tests: [unique, not_null]\n";
const MODEL: &str = "select 1 as id\n";
const PROFILE: &str =
    "p:\n  target: local\n  outputs:\n    local:\n      type: datafusion\n      warehouse: warehouse\n";

/// Write a project whose `file` is `text` (the others fixed) and load it, with its profile.
fn load_with(dir: &Path, file: &str, text: &[u8]) -> bool {
    let files: BTreeMap<&str, &[u8]> = BTreeMap::from([
        ("tally_project.yml", PROJECT.as_bytes()),
        ("models/schema.yml", SCHEMA.as_bytes()),
        ("models/m.sql", MODEL.as_bytes()),
        ("profiles/profiles.yml", PROFILE.as_bytes()),
    ]);
    for (path, body) in files {
        let body = if path == file { text } else { body };
        std::fs::write(dir.join(path), body).unwrap();
    }
    tally::project::load(dir, &BTreeMap::new()).is_ok_and(|p| tally::profile::resolve(&p, None).is_ok())
}

fn project_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("models")).unwrap();
    std::fs::create_dir_all(d.path().join("profiles")).unwrap();
    d
}

/// The files the YAML target writes; an input's first byte picks one (mod 3).
const YAML_FILES: [&str; 3] = ["tally_project.yml", "models/schema.yml", "profiles/profiles.yml"];

/// Which of [`YAML_FILES`] a file of this path is.
fn yaml_kind(path: &str) -> u8 {
    if path.ends_with("tally_project.yml")
        || path.ends_with("dbt_project.yml")
        || path.ends_with("fuzz/yaml/project.yml")
    {
        0
    } else if path.contains("profile") {
        2
    } else {
        1
    }
}

/// YAML seeds, each prefixed by its kind: the project's own files, the
/// fuzz corpus, and every YAML file inside the catalog's cases.
fn yaml_seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut add = |path: &str, body: &[u8]| out.push([&[yaml_kind(path)][..], body].concat());
    add("tally_project.yml", &std::fs::read(root.join("tally_project.yml")).unwrap());
    for dir in ["models", "profiles", "tests_data/fuzz/yaml"] {
        for (path, body) in files_under(&root.join(dir), "yml") {
            add(&path, &body);
        }
    }
    for (_, case) in files_under(&root.join("tests_data/errors"), "txt") {
        let text = String::from_utf8_lossy(&case).into_owned();
        for section in text.split("\n-- ").skip(1) {
            if let Some((header, body)) = section.split_once(" --\n")
                && header.ends_with(".yml")
            {
                add(header, body.as_bytes());
            }
        }
    }
    out
}

/// (path, bytes) of every file with extension `ext` below `dir`.
fn files_under(dir: &Path, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_yaml_loaders() {
    let dir = project_dir();
    let seeds = yaml_seeds();
    let report = fuzz("yaml_loaders", &seeds, YAML_TOKENS, |input| {
        let (kind, body) = input.split_first().map_or((0, &[][..]), |(k, b)| (*k, b));
        load_with(dir.path(), YAML_FILES[usize::from(kind % 3)], body)
    });
    assert!(report.crashes.is_empty(), "{:#?}", report.crashes);
}

/// A project with one model and a `macros/` folder.
fn model_project() -> tempfile::TempDir {
    let dir = project_dir();
    std::fs::write(dir.path().join("tally_project.yml"), PROJECT).unwrap();
    std::fs::write(dir.path().join("models/m.sql"), MODEL).unwrap();
    std::fs::create_dir_all(dir.path().join("macros")).unwrap();
    dir
}

fn target_info() -> TargetInfo {
    TargetInfo {
        name: "dev".into(),
        profile_name: "p".into(),
        engine: "datafusion".into(),
        threads: 2,
        warehouse: "w".into(),
    }
}

#[test]
fn fuzz_render() {
    // The reference project itself: its models' refs, sources and macros resolve, so
    // mutants get past the first `ref()` and into the macros.
    let project = tally::project::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")), &BTreeMap::new()).unwrap();
    let renderer = Renderer::new(&project, &target_info(), "2024-01-01T00:00:00Z").unwrap();
    let seeds = corpus(&[("models", "sql"), ("macros", "sql"), ("tests_data/fuzz/jinja", "sql")]);
    let report = fuzz("render", &seeds, JINJA_TOKENS, |input| {
        let text = String::from_utf8_lossy(input);
        renderer.render(Path::new("models/fuzzed.sql"), &text, "fuzzed").is_ok()
    });
    assert!(report.crashes.is_empty(), "{:#?}", report.crashes);
}

#[test]
fn fuzz_macro_files() {
    // Macro files are rendered once when the renderer is made: their own path.
    let dir = model_project();
    let info = target_info();
    let seeds = corpus(&[("macros", "sql"), ("tests_data/fuzz/jinja", "sql")]);
    let report = fuzz("macro_files", &seeds, JINJA_TOKENS, |input| {
        std::fs::write(dir.path().join("macros/f.sql"), input).unwrap();
        tally::project::load(dir.path(), &BTreeMap::new()).is_ok_and(|project| {
            Renderer::new(&project, &info, "t")
                .is_ok_and(|r| r.render(Path::new("models/m.sql"), "select {{ 1 }}", "m").is_ok())
        })
    });
    assert!(report.crashes.is_empty(), "{:#?}", report.crashes);
}
