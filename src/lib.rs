//! tally: a dbt-like transformation and data-quality framework on Apache DataFusion.
//!
//! The work is a chain, one module per link:
//!
//! ```text
//! project (load) -> render (Jinja) -> dag (order, cycles) -> plan (DataFusion, typed)
//!   -> run (parallel DAG) -> materialize (Delta tables) -> artifacts/report
//! ```
//! [`compile::compile`] runs the chain up to typed plans; [`run::run`] executes it.

pub mod artifacts;
pub mod assertions;
pub mod audit;
pub mod build_plan;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod dag;
pub mod diagnostic;
pub mod error;
pub mod executor;
pub mod generate;
pub mod lease;
pub mod materialize;
pub mod plan;
pub mod profile;
pub mod project;
pub mod render;
pub mod report;
pub mod run;
pub mod scorecard;
pub mod select;
pub mod storage;
pub mod verdicts;
