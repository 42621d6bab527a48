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
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let project_dir = cli.global.project_dir.clone();
    match runtime.block_on(tally::commands::dispatch(&cli.global, cli.command)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            report_error(&e, &project_dir);
            ExitCode::from(e.exit_code() as u8)
        }
    }
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
