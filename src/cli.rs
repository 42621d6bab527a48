//! Command-line arguments (clap structs only; behaviour lives in `commands`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Transform and assert revenue data: SQL + Jinja models compiled to DataFusion, published as Delta tables"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Project directory (holding tally_project.yml or dbt_project.yml).
    #[arg(long, global = true, default_value = ".", env = "TALLY_PROJECT_DIR")]
    pub project_dir: PathBuf,
    /// Target (an output of the profile in profiles/profiles.yml).
    #[arg(long, global = true, env = "TALLY_TARGET")]
    pub target: Option<String>,
    /// Variables as a YAML mapping, over the project's `vars`, e.g. '{as_of: 2024-06-30}'.
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Models run at once (default: the profile's threads, else the number of cores).
    #[arg(long, global = true, value_parser = positive)]
    pub threads: Option<usize>,
    /// A local folder outside the project that sources may read (repeatable;
    /// as the target's `allowed_roots`; TALLY_ALLOW_ROOT takes a `:`-separated list).
    /// Project files (models, YAML, seeds) never may.
    #[arg(
        long = "allow-root",
        global = true,
        value_name = "DIR",
        env = "TALLY_ALLOW_ROOT",
        value_delimiter = ':'
    )]
    pub allow_roots: Vec<PathBuf>,
    /// Less output: errors and the final summary line only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project that builds at once.
    Init {
        /// Directory to create (must not exist or be empty).
        dir: PathBuf,
    },
    /// Render and plan every model; write target/compiled and target/manifest.json. Reads no data.
    Compile(Selection),
    /// Run the selected models in DAG order.
    Run {
        #[command(flatten)]
        selection: Selection,
        /// Print the plan of steps and their order, and run nothing.
        #[arg(long)]
        plan: bool,
    },
    /// Write, audit, publish: run the selected models in DAG order, check each one's
    /// staged data and publish it only if no error-level assertion fails; exit 1 otherwise.
    Build {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        gate: Gate,
        /// Print the plan of steps (checks, writes, audits, publishes) and their order, and run nothing.
        #[arg(long)]
        plan: bool,
    },
    /// Run the data tests declared in YAML on the published tables; exit 1 when an error-level one fails.
    Test {
        #[command(flatten)]
        selection: Selection,
        #[command(flatten)]
        gate: Gate,
    },
    /// Check source freshness (dbt `freshness:` with `loaded_at_field`) against as_of or now.
    Freshness {
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// List what a selection resolves to.
    Ls {
        #[command(flatten)]
        selection: Selection,
        /// What to print per node.
        #[arg(long, value_enum, default_value_t = LsOutput::Name)]
        output: LsOutput,
    },
    /// Print rows of a built model.
    Show {
        /// Model or seed name.
        model: String,
        /// Rows to print (0: all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = ShowFormat::Table)]
        format: ShowFormat,
        /// Time travel: the table as published at this Delta version (run_results.json records each build's).
        #[arg(long)]
        version: Option<u64>,
        /// Time travel: the table as it was at this instant (RFC 3339, `YYYY-MM-DD HH:MM:SS` or a date; UTC).
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Remove the clean targets (target/ by default).
    Clean,
    /// Delete data files no version within the retention reads (old versions, orphans of
    /// killed or rejected runs), the failing rows of old runs and killed builds' scratch.
    Gc {
        /// Keep what the last this-many hours of versions need (time travel stops there).
        #[arg(long, default_value_t = 168)]
        retain_hours: u64,
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Nodes to include: name, +name, name+, tag:x, path:models/dir, source:s.t (space-separated union).
    #[arg(short, long, num_args = 1..)]
    pub select: Vec<String>,
    /// Nodes to leave out (same syntax).
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
}

/// How assertions judge a run, and where their results go besides the console.
#[derive(Debug, Clone, Default, Args)]
pub struct Gate {
    /// Also write every assertion's result as JUnit XML (for CI systems).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Treat warnings as errors: a warned table is not published and the exit code is 1.
    #[arg(long)]
    pub warn_error: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LsOutput {
    Name,
    Path,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ShowFormat {
    Table,
    Csv,
    Json,
}

/// A count of at least 1 (`--threads 0` would run nothing and wait forever).
fn positive(s: &str) -> Result<usize, NotPositive> {
    s.parse::<usize>().ok().filter(|n| *n > 0).ok_or(NotPositive)
}

#[derive(Debug, thiserror::Error)]
#[error("must be a whole number of at least 1")]
pub struct NotPositive;
