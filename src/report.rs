//! What the user sees while and after models run: a progress bar on a
//! terminal, one plain line per node otherwise, and a summary table.

use std::io::IsTerminal;
use std::sync::Mutex;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressStyle};

use crate::run::{NodeResult, Progress, Status};

pub struct Reporter {
    bar: Option<ProgressBar>,
    quiet: bool,
    running: Mutex<Vec<String>>,
}

impl Reporter {
    pub fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Reporter { bar, quiet, running: Mutex::new(Vec::new()) }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn set_running(&self, f: impl FnOnce(&mut Vec<String>)) {
        if let (Some(bar), Ok(mut running)) = (&self.bar, self.running.lock()) {
            f(&mut running);
            bar.set_message(running.join(", "));
        }
    }
}

impl Progress for Reporter {
    fn started(&self, name: &str) {
        self.set_running(|r| r.push(name.to_string()));
    }

    fn finished(&self, r: &NodeResult) {
        self.set_running(|running| running.retain(|n| n != &r.name));
        let line = line(r);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.println(line);
            }
            None if !self.quiet || r.status == Status::Error => println!("{line}"),
            None => {}
        }
    }
}

fn line(r: &NodeResult) -> String {
    let status = match r.status {
        Status::Success => "OK   ",
        Status::Error => "ERROR",
        Status::Skipped => "SKIP ",
    };
    let rows = r.rows.map(|n| format!(" {n} rows")).unwrap_or_default();
    let msg = r.message.as_ref().map(|m| format!("\n      {m}")).unwrap_or_default();
    format!("{status} {} [{}{rows} in {:.2}s]{msg}", r.name, r.materialized.as_str(), r.execution_time)
}

/// The end-of-run table and totals line.
pub fn summary(results: &[NodeResult], elapsed: f64) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "model",
        "materialized",
        "status",
        "rows",
        "bytes",
        "seconds",
    ]);
    for r in results {
        let status = match r.status {
            Status::Success => "ok",
            Status::Error => "error",
            Status::Skipped => "skipped",
        };
        table.add_row(vec![
            Cell::new(&r.name),
            Cell::new(r.materialized.as_str()),
            Cell::new(status),
            Cell::new(r.rows.map(|n| n.to_string()).unwrap_or_default()).set_alignment(CellAlignment::Right),
            Cell::new(r.bytes.map(human_bytes).unwrap_or_default()).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.2}", r.execution_time)).set_alignment(CellAlignment::Right),
        ]);
    }
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    format!(
        "{table}\nDone in {elapsed:.2}s: {} ok, {} error, {} skipped",
        count(Status::Success),
        count(Status::Error),
        count(Status::Skipped)
    )
}

/// The assertions' table, one line per warned or failed check (with its
/// file:line, a sample of failing keys, where the failing rows were stored),
/// and a totals line.
pub fn assertions(outcomes: &[crate::assertions::Outcome]) -> String {
    use crate::assertions::Status;
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "status",
        "assertion",
        "failing",
        "checked",
        "observed",
        "threshold",
    ]);
    for o in outcomes {
        let status = if o.blocks() { o.status_word().to_uppercase() } else { o.status_word().to_string() };
        table.add_row(vec![
            Cell::new(status),
            Cell::new(&o.name),
            Cell::new(o.failing_rows).set_alignment(CellAlignment::Right),
            Cell::new(o.rows_checked).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.4}", o.observed)).set_alignment(CellAlignment::Right),
            Cell::new(&o.threshold),
        ]);
    }
    let mut out = format!("{table}\n");
    for o in outcomes.iter().filter(|o| o.status != Status::Pass) {
        out.push_str(&format!("{}: {} {}:{}: {}\n", o.status_word(), o.name, o.file, o.line, o.describe()));
        for row in &o.sample {
            out.push_str(&format!("      {row}\n"));
        }
        if let Some(path) = &o.failing_rows_path {
            out.push_str(&format!("      failing rows: {path}\n"));
        }
    }
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    out.push_str(&format!(
        "Assertions: {} pass, {} warn, {} fail, {} error",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Error)
    ));
    out
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// JUnit XML: one testsuite per relation, one testcase per assertion; a
/// failed or erroring assertion is a `<failure>`, a warning passes with its
/// counts in `<system-out>`. (Escaping five characters by hand is simpler
/// than a dependency.)
pub fn junit(outcomes: &[crate::assertions::Outcome], elapsed: f64) -> String {
    use crate::assertions::Status;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;")
    };
    let mut suites: std::collections::BTreeMap<&str, Vec<&crate::assertions::Outcome>> = Default::default();
    for o in outcomes {
        suites.entry(o.relation.as_str()).or_default().push(o);
    }
    let failures = outcomes.iter().filter(|o| matches!(o.status, Status::Fail | Status::Error)).count();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tally\" tests=\"{}\" failures=\"{failures}\" time=\"{elapsed:.3}\">\n",
        outcomes.len()
    );
    for (relation, list) in suites {
        let f = list.iter().filter(|o| matches!(o.status, Status::Fail | Status::Error)).count();
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">\n",
            esc(relation),
            list.len()
        ));
        for o in list {
            let counts = format!("{} (observed {}, threshold {})", o.describe(), o.observed, o.threshold);
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\">",
                esc(relation),
                esc(&o.name),
                esc(&o.file),
                o.line
            ));
            match o.status {
                Status::Fail | Status::Error => {
                    let msg = o.describe();
                    x.push_str(&format!(
                        "<failure type=\"{}\" message=\"{}\">{}:{}: {}</failure>",
                        o.status_word(),
                        esc(&msg),
                        esc(&o.file),
                        o.line,
                        esc(&counts)
                    ));
                }
                Status::Warn => x.push_str(&format!("<system-out>warn: {}</system-out>", esc(&counts))),
                Status::Pass => {}
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}
