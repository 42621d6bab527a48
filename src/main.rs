//! CLI entry: parse arguments, set up logging, run the command, map the outcome
//! to an exit code (0 ok, 1 a model failed, 2 usage or project error).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tally::cli::{Cli, LogFormat};
use tally::error::Error;

// jemalloc, not the system allocator: at scale 10 the build's peak RSS was
// ~18% lower than glibc's (many threads allocating Arrow buffers fragment
// glibc's arenas), and compile spent ~30% of its instructions in glibc malloc.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main`: one arena per CPU rather than its
/// default four, which held ~7% more peak memory at scale 10 for no speed;
/// freed pages given back to the system after 1 s rather than 10 s: a build's
/// steps free hundreds of MB (a staged view's rows, a sort's runs) that the
/// next step does not reuse, and at scale 10 the build's peak RSS fell by
/// ~50 MB (8 %) for 0.10-0.15 s more CPU (of 6 s) and no wall time.
/// `_RJEM_MALLOC_CONF` in the environment still overrides it.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 40] = b"percpu_arena:percpu,dirty_decay_ms:1000\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let project_dir = cli.global.project_dir.clone();
    let run = std::panic::AssertUnwindSafe(|| {
        runtime.block_on(tally::commands::dispatch(&cli.global, cli.command))
    });
    match std::panic::catch_unwind(run) {
        Ok(Ok(code)) => ExitCode::from(code as u8),
        Ok(Err(e)) => {
            report_error(&e, &project_dir);
            ExitCode::from(e.exit_code() as u8)
        }
        Err(_) => {
            // A bug: say what and where, and how to report it, instead of
            // Rust's default text. Nothing half-written is published (each
            // table's commit is its last step); a kept lease is taken over
            // by the next run on this host.
            let what =
                LAST_PANIC.lock().ok().and_then(|p| p.clone()).unwrap_or_else(|| "(no message)".into());
            eprintln!("error: internal error, a bug in tally: {what}");
            eprintln!(
                "  help: please report it with the command you ran and tally {}; RUST_BACKTRACE=1 prints a backtrace. No table was published by the step that failed.",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(101)
        }
    }
}

static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Panics are recorded, not printed where they happen: a library may catch
/// one and carry on (delta-rs catches object_store's panicking `abort` after
/// a failed upload, and returns the upload's error), and a panicking task
/// fails only its model, reported with the panic's message. One that
/// reaches `main` is reported as a bug, exit 101 (see `main`).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::debug!("panic: {what}{at}");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("panic: {what}{at}\n{}", std::backtrace::Backtrace::force_capture());
        }
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{what}{at}"));
        }
    }));
}

fn report_error(e: &Error, project_dir: &std::path::Path) {
    let color = std::io::stderr().is_terminal();
    let dir = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
    match e {
        Error::Project(diags) => {
            for d in diags {
                eprintln!("error: {}", d.headline());
                let snippet = d.snippet(&dir, color);
                if !snippet.is_empty() {
                    eprintln!("{snippet}");
                }
                if let Some(h) = &d.help {
                    eprintln!("  help: {h}");
                }
            }
            if diags.len() > 1 {
                eprintln!("{} errors", diags.len());
            }
        }
        other => eprintln!("error: {other}"),
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // delta-rs logs an ERROR when it probes a table that does not exist yet
    // (every first build): expected, so quiet unless asked for with -vv.
    let default = match cli.global.verbose {
        0 => "warn,buoyant_kernel=off,deltalake_core=off",
        1 => "tally=info,warn,buoyant_kernel=off",
        _ => "tally=debug,info",
    };
    let filter = EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cli.global.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
