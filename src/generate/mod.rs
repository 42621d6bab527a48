//! Deterministic generator of the raw revenue tables of SPEC §1, at any scale,
//! with the defects real connectors produce (each behind a knob).
//!
//! Scale 1 is about 100,000 opportunities. The same `(scale, seed, knobs)`
//! always yields the same rows.

mod entities;
mod rng;
pub mod table;

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

pub use rng::Rng;
pub use table::{Col, Row, Table, V};

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub scale: f64,
    pub seed: u64,
    /// First month of business history.
    pub start: NaiveDate,
    /// The last day data was loaded (the build's default `as_of`).
    pub as_of: NaiveDate,
    /// Share of rows re-delivered later (pure re-delivery or a CDC update).
    pub duplicate_rate: f64,
    /// Share of extra rows whose key (or a part of it) is null.
    pub null_key_rate: f64,
    /// Share of rows soft-deleted later (half of them after an intermediate update).
    pub delete_rate: f64,
    /// Share of rows loaded days after their last update.
    pub late_load_rate: f64,
    /// A source whose connector stalled `stall_hours` before `as_of`.
    pub stalled_source: Option<String>,
    pub stall_hours: i64,
    /// Share of accounts billed in EUR or GBP.
    pub foreign_currency_rate: f64,
    /// Months (after the first) with no fx rate for any currency.
    pub missing_fx_months: usize,
    /// Share of opportunities whose account_id names no account.
    pub orphan_account_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            scale: 1.0,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default(),
            as_of: NaiveDate::from_ymd_opt(2025, 6, 30).unwrap_or_default(),
            duplicate_rate: 0.02,
            null_key_rate: 0.005,
            delete_rate: 0.01,
            late_load_rate: 0.01,
            stalled_source: None,
            stall_hours: 48,
            foreign_currency_rate: 0.3,
            missing_fx_months: 2,
            orphan_account_rate: 0.01,
        }
    }
}

impl GenConfig {
    /// The same data without any defect (currencies stay mixed).
    pub fn without_defects(mut self) -> Self {
        self.duplicate_rate = 0.0;
        self.null_key_rate = 0.0;
        self.delete_rate = 0.0;
        self.late_load_rate = 0.0;
        self.stalled_source = None;
        self.missing_fx_months = 0;
        self.orphan_account_rate = 0.0;
        self
    }
}

pub const TABLES: [&str; 8] = [
    "crm_users",
    "crm_accounts",
    "crm_leads",
    "crm_opportunities",
    "crm_opportunity_history",
    "billing_subscriptions",
    "fx_rates",
    "gtm_spend",
];

/// Generate every table (rows in memory: scale 10 is about 4 million rows).
pub fn generate(cfg: &GenConfig) -> Vec<Table> {
    let mut tables = entities::generate(cfg);
    let root = Rng::new(cfg.seed);
    for (i, t) in tables.iter_mut().enumerate() {
        let mut rng = root.fork(1000 + i as u64);
        entities::inject_defects(t, cfg, &mut rng);
    }
    tables
}

/// Write `<out>/<table>/part-N.parquet` (zstd), one file per delivery.
pub fn write(tables: &[Table], out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    for t in tables {
        let dir = out.join(t.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        // Empty files are left out, but a table with no rows at all still
        // gets one (a zero-row file: its schema, and a delivery that came).
        let all_empty = t.files.iter().all(|r| r.is_empty());
        for (i, rows) in t.files.iter().enumerate().filter(|(i, r)| !r.is_empty() || (all_empty && *i == 0)) {
            let file = std::fs::File::create(dir.join(format!("part-{i}.parquet")))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .build();
            let mut w = ArrowWriter::try_new(file, t.schema(), Some(props))?;
            for chunk in rows.chunks(65_536) {
                w.write(&t.batch(chunk)?)?;
            }
            w.close()?;
        }
    }
    Ok(())
}

// --- calendar helpers (days since 1970-01-01, microseconds since the epoch) ---

const EPOCH_CE_DAYS: i32 = 719_163;
pub const DAY_US: i64 = 86_400_000_000;
pub const HOUR_US: i64 = 3_600_000_000;

pub fn day(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - EPOCH_CE_DAYS
}

pub fn date(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day + EPOCH_CE_DAYS).unwrap_or_default()
}

pub fn month_start(d: i32) -> i32 {
    let n = date(d);
    day(NaiveDate::from_ymd_opt(n.year(), n.month(), 1).unwrap_or(n))
}

pub fn add_months(d: i32, months: i32) -> i32 {
    let n = date(month_start(d));
    let total = n.year() * 12 + n.month0() as i32 + months;
    day(NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(n))
}

pub fn us(day: i32) -> i64 {
    day as i64 * DAY_US
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        let d = day(NaiveDate::from_ymd_opt(2024, 3, 15).unwrap());
        assert_eq!(date(month_start(d)), NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        assert_eq!(date(add_months(d, -3)), NaiveDate::from_ymd_opt(2023, 12, 1).unwrap());
        assert_eq!(day(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
    }

    #[test]
    fn deterministic_and_scaled() {
        let cfg = GenConfig { scale: 0.01, ..GenConfig::default() };
        let a = generate(&cfg);
        let b = generate(&cfg);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.files, y.files, "{}", x.name);
        }
        let opps = a.iter().find(|t| t.name == "crm_opportunities").unwrap();
        assert!((1000..1200).contains(&opps.rows()), "{}", opps.rows());
    }
}
