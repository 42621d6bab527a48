//! Data-quality assertions declared in YAML (dbt's `tests:` syntax, plus
//! tally's own), evaluated with as few scans as possible: every column-level
//! check of one relation is one aggregate query (`count(*) FILTER (WHERE ...)`
//! per check); duplicates (rows per key), relationships, reconciliations and
//! freshness run a query of their own.
//!
//! Each kind is a file of its own (`completeness.rs`...) implementing
//! [`CheckKind`], listed in the registry (`kinds.rs`): adding a kind is its
//! file and one line there.
//!
//! | kind            | declared as                                        | failing rows                         |
//! |-----------------|----------------------------------------------------|--------------------------------------|
//! | completeness    | `not_null`, `completeness: {min_ratio: 0.95}`      | rows with a null in a checked column |
//! | duplicates      | `unique`, `duplicates: {columns: [a, b], max_ratio}`| non-null keys minus distinct ones   |
//! | accepted_values | `accepted_values: {values: [...]}`                 | non-null values outside the list     |
//! | relationships   | `relationships: {to: ref('x'), field: id}`         | non-null keys missing from `to`      |
//! | row_count       | `row_count: {min, max}`                            | (observed = rows)                    |
//! | expression      | `expression: "amount >= 0"`                        | rows where it is false               |
//! | freshness       | dbt source `freshness:` + `loaded_at_field`, or    | (observed = hours since max(column)) |
//! |                 | `freshness: {column, warn_after, error_after}`     |                                      |
//! | reconciliation  | `reconciliation: {measure, to, to_measure, by}`    | groups whose measures differ         |
//! | custom          | a SQL file under `tests/` (dbt's singular test)    | the rows it returns                  |

mod accepted_values;
mod check;
mod completeness;
mod custom;
mod duplicates;
mod evaluate;
mod expression;
pub mod failing;
mod footers;
mod freshness;
mod key_hashes;
mod key_runs;
mod kind;
mod kinds;
mod parse;
mod reconciliation;
mod relationships;
mod row_count;
mod set;
mod validate;
mod verdict;

pub use check::{Assertion, Outcome, UPSTREAM_LOADED_AT};
pub use evaluate::{Evaluated, evaluate};
pub use footers::proven_unblocked;
pub use key_runs::{Counted, KeyCounts, KeyRuns};
pub use kind::{CheckKind, relation_sql};
pub use kinds::{
    AcceptedValues, Completeness, Custom, Duplicates, Expression, Freshness, Kind, KindTag, Reconciliation,
    Relationships, RowCount,
};
pub use parse::parse;
pub use set::CheckSet;
pub use validate::{Lookup, validate};
pub use verdict::{CheckError, Severity, Status, Threshold};
