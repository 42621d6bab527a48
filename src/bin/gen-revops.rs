//! `gen-revops`: write the raw revenue tables of SPEC §1 as Parquet, at any
//! scale, deterministically, with connector defects behind knobs.
//!
//! cargo run --release --bin gen-revops -- --scale 1 --seed 42 --out /data/raw

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use chrono::NaiveDate;
use clap::Parser;
use tally::generate::{GenConfig, generate, write};

#[derive(Parser)]
#[command(about = "Generate the raw revenue tables (SPEC §1) as Parquet")]
struct Args {
    /// 1.0 is about 100,000 opportunities.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder: <out>/<table>/part-N.parquet.
    #[arg(long)]
    out: PathBuf,
    /// Last day data was loaded (YYYY-MM-DD).
    #[arg(long, default_value = "2025-06-30")]
    as_of: NaiveDate,
    /// First month of history (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01")]
    start: NaiveDate,
    /// Turn every defect off (currencies stay mixed).
    #[arg(long)]
    no_defects: bool,
    #[arg(long)]
    duplicate_rate: Option<f64>,
    #[arg(long)]
    null_key_rate: Option<f64>,
    #[arg(long)]
    delete_rate: Option<f64>,
    #[arg(long)]
    late_load_rate: Option<f64>,
    /// A source table whose connector stalled before as_of.
    #[arg(long)]
    stalled_source: Option<String>,
    #[arg(long, default_value_t = 48)]
    stall_hours: i64,
    /// Share of accounts billed in EUR or GBP.
    #[arg(long)]
    foreign_currency_rate: Option<f64>,
    /// Months with no fx rate.
    #[arg(long)]
    missing_fx_months: Option<usize>,
    /// Share of opportunities whose account_id names no account.
    #[arg(long)]
    orphan_account_rate: Option<f64>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.scale <= 0.0 || a.start >= a.as_of {
        eprintln!("error: --scale must be positive and --start before --as-of");
        return ExitCode::from(2);
    }
    if let Some(s) = &a.stalled_source
        && !tally::generate::TABLES.contains(&s.as_str())
    {
        eprintln!(
            "error: --stalled-source {s}: not a table; use one of {}",
            tally::generate::TABLES.join(", ")
        );
        return ExitCode::from(2);
    }
    let mut cfg = GenConfig {
        scale: a.scale,
        seed: a.seed,
        start: a.start,
        as_of: a.as_of,
        stall_hours: a.stall_hours,
        ..GenConfig::default()
    };
    if a.no_defects {
        cfg = cfg.without_defects();
    }
    cfg.duplicate_rate = a.duplicate_rate.unwrap_or(cfg.duplicate_rate);
    cfg.null_key_rate = a.null_key_rate.unwrap_or(cfg.null_key_rate);
    cfg.delete_rate = a.delete_rate.unwrap_or(cfg.delete_rate);
    cfg.late_load_rate = a.late_load_rate.unwrap_or(cfg.late_load_rate);
    cfg.stalled_source = a.stalled_source.or(cfg.stalled_source);
    cfg.foreign_currency_rate = a.foreign_currency_rate.unwrap_or(cfg.foreign_currency_rate);
    cfg.missing_fx_months = a.missing_fx_months.unwrap_or(cfg.missing_fx_months);
    cfg.orphan_account_rate = a.orphan_account_rate.unwrap_or(cfg.orphan_account_rate);

    let start = Instant::now();
    let tables = generate(&cfg);
    if let Err(e) = write(&tables, &a.out) {
        eprintln!("error: writing {}: {e}", a.out.display());
        return ExitCode::from(1);
    }
    for t in &tables {
        println!("{:<26} {:>9} rows", t.name, t.rows());
    }
    println!("wrote {} in {:.2}s", a.out.display(), start.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
