//! End-to-end tests: the real `tally` binary on fixture projects in `tests_data/`.

mod common;

mod assertions;
mod build;
mod catalog;
mod crash;
mod errors;
mod faults;
mod gate;
mod memory;
mod revenue;
mod revenue_scale;
mod s3;
mod select;
mod sources;
mod versions;
