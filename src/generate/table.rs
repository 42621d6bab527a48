//! Raw tables as loose rows of typed cells, written to Parquet with the exact
//! column types of SPEC §1.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Str,
    I64,
    /// DECIMAL(18,2), stored as cents.
    Money,
    /// DECIMAL(18,8), stored as 1e-8 units.
    Rate,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since the epoch, UTC.
    Ts,
    Bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    S(String),
    I(i64),
    D(i128),
    Day(i32),
    Ts(i64),
    B(bool),
}

impl V {
    pub fn ts(&self) -> Option<i64> {
        match self {
            V::Ts(t) => Some(*t),
            _ => None,
        }
    }
}

pub type Row = Vec<V>;

/// One raw table: its columns, and the roles the defect injector needs.
pub struct Table {
    pub name: &'static str,
    pub cols: Vec<(&'static str, Col)>,
    /// Column indexes of the key (composite keys have several).
    pub key: Vec<usize>,
    pub updated_at: Option<usize>,
    pub is_deleted: Option<usize>,
    pub loaded_at: usize,
    /// Timestamps marked UTC-adjusted in Parquet; else naive (holding UTC).
    pub utc: bool,
    /// First delivery, then re-deliveries (duplicates, CDC updates, late deletes).
    pub files: Vec<Vec<Row>>,
}

/// SPEC §1's raw tables: (name, columns, key, whether timestamps are UTC-adjusted).
/// Billing lands naive timestamps (holding UTC); every other source UTC-adjusted ones.
/// A table's columns, in file order.
type Columns = &'static [(&'static str, Col)];

const SPEC_TABLES: [(&str, Columns, &[&str], bool); 8] = [
    ("crm_users", CRM_USERS, &["user_id"], true),
    ("crm_accounts", CRM_ACCOUNTS, &["account_id"], true),
    ("crm_leads", CRM_LEADS, &["lead_id"], true),
    ("crm_opportunities", CRM_OPPORTUNITIES, &["opportunity_id"], true),
    ("crm_opportunity_history", CRM_OPPORTUNITY_HISTORY, &["opportunity_id", "changed_at"], true),
    ("billing_subscriptions", BILLING_SUBSCRIPTIONS, &["subscription_id"], false),
    ("fx_rates", FX_RATES, &["currency", "month"], true),
    ("gtm_spend", GTM_SPEND, &["month", "department", "category"], true),
];

const CRM_USERS: Columns = &[
    ("user_id", Col::Str),
    ("full_name", Col::Str),
    ("role", Col::Str),
    ("team", Col::Str),
    ("region", Col::Str),
    ("quarterly_quota", Col::Money),
    ("hired_at", Col::Date),
    ("is_active", Col::Bool),
    ("updated_at", Col::Ts),
    ("_loaded_at", Col::Ts),
];

const CRM_ACCOUNTS: Columns = &[
    ("account_id", Col::Str),
    ("account_name", Col::Str),
    ("industry", Col::Str),
    ("segment", Col::Str),
    ("region", Col::Str),
    ("employee_count", Col::I64),
    ("owner_id", Col::Str),
    ("created_at", Col::Ts),
    ("updated_at", Col::Ts),
    ("is_deleted", Col::Bool),
    ("_loaded_at", Col::Ts),
];

const CRM_LEADS: Columns = &[
    ("lead_id", Col::Str),
    ("email", Col::Str),
    ("company", Col::Str),
    ("lead_source", Col::Str),
    ("status", Col::Str),
    ("owner_id", Col::Str),
    ("created_at", Col::Ts),
    ("mql_at", Col::Ts),
    ("sql_at", Col::Ts),
    ("converted_at", Col::Ts),
    ("converted_account_id", Col::Str),
    ("converted_opportunity_id", Col::Str),
    ("updated_at", Col::Ts),
    ("is_deleted", Col::Bool),
    ("_loaded_at", Col::Ts),
];

const CRM_OPPORTUNITIES: Columns = &[
    ("opportunity_id", Col::Str),
    ("account_id", Col::Str),
    ("owner_id", Col::Str),
    ("opportunity_type", Col::Str),
    ("stage", Col::Str),
    ("forecast_category", Col::Str),
    ("amount", Col::Money),
    ("currency", Col::Str),
    ("close_date", Col::Date),
    ("created_at", Col::Ts),
    ("updated_at", Col::Ts),
    ("is_deleted", Col::Bool),
    ("_loaded_at", Col::Ts),
];

const CRM_OPPORTUNITY_HISTORY: Columns = &[
    ("opportunity_id", Col::Str),
    ("stage", Col::Str),
    ("forecast_category", Col::Str),
    ("amount", Col::Money),
    ("close_date", Col::Date),
    ("changed_at", Col::Ts),
    ("_loaded_at", Col::Ts),
];

const BILLING_SUBSCRIPTIONS: Columns = &[
    ("subscription_id", Col::Str),
    ("account_id", Col::Str),
    ("plan", Col::Str),
    ("mrr", Col::Money),
    ("currency", Col::Str),
    ("start_date", Col::Date),
    ("end_date", Col::Date),
    ("updated_at", Col::Ts),
    ("_loaded_at", Col::Ts),
];

const FX_RATES: Columns =
    &[("currency", Col::Str), ("month", Col::Date), ("usd_per_unit", Col::Rate), ("_loaded_at", Col::Ts)];

const GTM_SPEND: Columns = &[
    ("month", Col::Date),
    ("department", Col::Str),
    ("category", Col::Str),
    ("amount_usd", Col::Money),
    ("_loaded_at", Col::Ts),
];

impl Table {
    /// An empty raw table with the columns and key of SPEC §1.
    pub fn spec(name: &str) -> Table {
        match SPEC_TABLES.iter().find(|(n, ..)| *n == name) {
            Some((name, cols, key, utc)) => Table::new(name, cols.to_vec(), key, *utc),
            None => panic!("not a SPEC §1 table: {name}"),
        }
    }

    /// Append a row written as text to delivery `file` (fixtures): empty is
    /// null; money `123.45`; rates `1.08`; dates `2024-01-31`; timestamps
    /// `2024-01-31T23:30:00` (UTC); booleans `true`/`false`.
    pub fn push_text(&mut self, file: usize, cells: &[&str]) {
        assert_eq!(
            cells.len(),
            self.cols.len(),
            "{}: {} cells for {} columns",
            self.name,
            cells.len(),
            self.cols.len()
        );
        let row: Row = self
            .cols
            .iter()
            .zip(cells)
            .map(|((n, c), v)| {
                parse_cell(*c, v).unwrap_or_else(|| panic!("{}.{n}: bad value {v:?}", self.name))
            })
            .collect();
        while self.files.len() <= file {
            self.files.push(Vec::new());
        }
        self.files[file].push(row);
    }

    pub(crate) fn new(name: &'static str, cols: Vec<(&'static str, Col)>, key: &[&str], utc: bool) -> Self {
        let idx = |n: &str| cols.iter().position(|(c, _)| *c == n);
        let key = key.iter().filter_map(|k| idx(k)).collect();
        let updated_at = idx("updated_at");
        let is_deleted = idx("is_deleted");
        let loaded_at = idx("_loaded_at").unwrap_or(cols.len() - 1);
        Table { name, cols, key, updated_at, is_deleted, loaded_at, utc, files: vec![Vec::new(), Vec::new()] }
    }

    pub fn col(&self, name: &str) -> usize {
        self.cols
            .iter()
            .position(|(c, _)| *c == name)
            .unwrap_or_else(|| panic!("{}: no column {name}", self.name))
    }

    pub fn schema(&self) -> Arc<Schema> {
        let tz = self.utc.then(|| Arc::<str>::from("UTC"));
        Arc::new(Schema::new(
            self.cols
                .iter()
                .map(|(n, c)| {
                    let t = match c {
                        Col::Str => DataType::Utf8,
                        Col::I64 => DataType::Int64,
                        Col::Money => DataType::Decimal128(18, 2),
                        Col::Rate => DataType::Decimal128(18, 8),
                        Col::Date => DataType::Date32,
                        Col::Ts => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
                        Col::Bool => DataType::Boolean,
                    };
                    Field::new(*n, t, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    pub fn batch(&self, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
        let schema = self.schema();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for (i, (_, col)) in self.cols.iter().enumerate() {
            let cells = rows.iter().map(|r| &r[i]);
            let array: ArrayRef = match col {
                Col::Str => Arc::new(StringArray::from_iter(cells.map(|v| match v {
                    V::S(s) => Some(s.as_str()),
                    _ => None,
                }))),
                Col::I64 => Arc::new(Int64Array::from_iter(cells.map(|v| match v {
                    V::I(x) => Some(*x),
                    _ => None,
                }))),
                Col::Money | Col::Rate => {
                    let scale = if *col == Col::Money { 2 } else { 8 };
                    Arc::new(
                        Decimal128Array::from_iter(cells.map(|v| match v {
                            V::D(x) => Some(*x),
                            _ => None,
                        }))
                        .with_precision_and_scale(18, scale)?,
                    )
                }
                Col::Date => Arc::new(Date32Array::from_iter(cells.map(|v| match v {
                    V::Day(d) => Some(*d),
                    _ => None,
                }))),
                Col::Ts => {
                    let a = TimestampMicrosecondArray::from_iter(cells.map(V::ts));
                    Arc::new(if self.utc { a.with_timezone("UTC") } else { a })
                }
                Col::Bool => Arc::new(BooleanArray::from_iter(cells.map(|v| match v {
                    V::B(b) => Some(*b),
                    _ => None,
                }))),
            };
            arrays.push(array);
        }
        RecordBatch::try_new(schema, arrays)
    }

    pub fn rows(&self) -> usize {
        self.files.iter().map(Vec::len).sum()
    }
}

fn parse_cell(col: Col, text: &str) -> Option<V> {
    if text.is_empty() {
        return Some(V::Null);
    }
    let decimal = |scale: u32| -> Option<V> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let frac = format!("{frac:0<width$}", width = scale as usize);
        let neg = int.starts_with('-');
        let magnitude = int.trim_start_matches('-').parse::<i128>().ok()? * 10i128.pow(scale)
            + frac.parse::<i128>().ok()?;
        Some(V::D(if neg { -magnitude } else { magnitude }))
    };
    Some(match col {
        Col::Str => V::S(text.to_string()),
        Col::I64 => V::I(text.parse().ok()?),
        Col::Money => decimal(2)?,
        Col::Rate => decimal(8)?,
        Col::Date => V::Day(super::day(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?)),
        Col::Ts => V::Ts(
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .ok()?
                .and_utc()
                .timestamp_micros(),
        ),
        Col::Bool => V::B(text.parse().ok()?),
    })
}
