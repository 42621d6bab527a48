//! A model over 10 million generated rows streams to Parquet: peak memory
//! stays well under the size of the data.

use crate::common::*;

#[test]
fn ten_million_rows_stream_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tally_project.yml"), "name: big\n").unwrap();
    std::fs::create_dir_all(d.join("models")).unwrap();
    std::fs::write(
        d.join("models/big.sql"),
        "{{ config(materialized='table') }}
select value as id,
       value * 7 % 1000003 as bucket,
       cast(value as double) / 3 as third,
       concat('row-', cast(value as varchar), '-', cast(value * 31 as varchar)) as label
from generate_series(1, 10000000)
",
    )
    .unwrap();
    tally(d, &["build", "--threads", "2"]).assert_code(0);
    let results = run_results(d);
    let big = result_of(&results, "big");
    assert_eq!(big["rows"], 10_000_000);

    // In Arrow the data is 3 x 8 bytes of numbers plus the labels (4-byte
    // offset + text) per row: id, id*31 in decimal, and 'row-' + '-'.
    let digits = |n: u64| n.to_string().len() as u64;
    let label_bytes: u64 = (1..=10_000_000u64).step_by(1).map(|v| 5 + digits(v) + digits(v * 31)).sum();
    let data_bytes = 10_000_000 * (3 * 8 + 4) + label_bytes;
    let peak = results["peak_rss_bytes"].as_u64().unwrap();
    eprintln!("data {} MiB, peak RSS {} MiB", data_bytes >> 20, peak >> 20);
    assert!(data_bytes > 400 << 20, "the data should be large: {data_bytes}");
    assert!(peak < data_bytes / 2, "peak RSS {peak} should be well under the data size {data_bytes}");
}
