//! Project errors: exit code 2, file, line and a message saying what to do,
//! and nothing runs.

use crate::common::*;

fn compile_error(name: &str) -> Run {
    let dir = fixture(&format!("errors/{name}"));
    let run = tally(dir.path(), &["build"]);
    run.assert_code(2);
    assert!(
        !dir.path().join("warehouse").exists(),
        "a project error must stop the build before any model runs"
    );
    // What the user sees, whole: every line, in order.
    let shown = run.stderr.replace(&dir.path().display().to_string(), "[PROJECT]");
    let mut settings = insta::Settings::clone_current();
    // DataFusion's suggestion for a misspelt column is not stable between runs.
    settings.add_filter(r"Did you mean '[^']*'\?", "Did you mean [..]?");
    settings.bind(|| insta::assert_snapshot!(format!("project_error__{name}"), shown));
    run
}

#[test]
fn type_error_is_caught_at_compile_time() {
    let run = compile_error("type_error");
    // `amount + true`: decimal plus boolean, on line 4 of bad.sql.
    assert!(run.stderr.contains("error: models/bad.sql:4:"), "{}", run.stderr);
    assert!(run.stderr.contains("Boolean"), "{}", run.stderr);
    // The unknown column is reported too, against its own file and line.
    assert!(run.stderr.contains("error: models/unknown_col.sql:3:5: No field named amont"), "{}", run.stderr);
    assert!(
        run.stderr.contains("help: the rendered SQL is in target/compiled/models/unknown_col.sql"),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_ref_names_file_line_and_suggests() {
    let run = compile_error("missing_ref");
    assert!(
        run.stderr.contains("error: models/accounts.sql:3:9: template error: ref('stg_acounts'): no model or seed named `stg_acounts`; did you mean `stg_accounts`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn cycle_prints_the_path() {
    let run = compile_error("cycle");
    assert!(
        run.stderr.contains("error: models/a.sql:1:18: dependency cycle: a -> c -> b -> a"),
        "{}",
        run.stderr
    );
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let run = compile_error("bad_yaml");
    assert!(run.stderr.contains("error: models/schema.yml:7:"), "{}", run.stderr);
    assert!(run.stderr.contains("invalid YAML"), "{}", run.stderr);
}

#[test]
fn template_error_names_file_line_and_column() {
    let run = compile_error("template_error");
    // `var('threshold'` is missing its `)`: the parser stops at the `}`.
    assert!(
        run.stderr.contains("error: models/broken.sql:4:31: template error: unexpected `}`, expected `,`"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_usage_exits_2() {
    let dir = fixture("diamond");
    let run = tally(dir.path(), &["run", "--select", "by_custmer"]);
    run.assert_code(2);
    assert!(run.stderr.contains("did you mean `by_customer`?"), "{}", run.stderr);
    let run = tally(dir.path(), &["run", "--vars", "[1, 2]"]);
    run.assert_code(2);
    let run = tally(dir.path(), &["frobnicate"]);
    run.assert_code(2);
    let empty = tempfile::tempdir().unwrap();
    let run = tally(empty.path(), &["build"]);
    run.assert_code(2);
    assert!(run.stderr.contains("no tally_project.yml or dbt_project.yml"), "{}", run.stderr);
}
