//! The reference project on generated data at scale 1 (about 100,000
//! opportunities, defects on): the SPEC's identities hold, and pipeline
//! coverage matches an independent computation from the raw rows in Rust.

use std::collections::BTreeMap;

use chrono::Datelike;
use tally::generate::{GenConfig, Table, V, date, generate, write};

use crate::common::*;
use crate::revenue::reference_project;

fn cents(s: &str) -> i128 {
    let neg = s.starts_with('-');
    let (i, f) = s.trim_start_matches('-').split_once('.').unwrap_or((s, "0"));
    let v = i.parse::<i128>().unwrap() * 100 + format!("{f:0<2}")[..2].parse::<i128>().unwrap();
    if neg { -v } else { v }
}

/// Divide, rounding half away from zero.
fn div_round(x: i128, d: i128) -> i128 {
    let q = x / d;
    let r = x % d;
    if 2 * r.abs() >= d { q + x.signum() } else { q }
}

fn col(t: &Table, name: &str) -> usize {
    t.col(name)
}

/// SPEC §2 dedupe: latest updated_at (null loses), then latest _loaded_at; null keys dropped; deletes after.
fn staged<'a>(t: &'a Table, key: &str) -> Vec<&'a Vec<V>> {
    let (k, u, l) = (col(t, key), t.updated_at, t.loaded_at);
    let mut best: BTreeMap<String, &Vec<V>> = BTreeMap::new();
    let rank =
        |r: &Vec<V>| (u.and_then(|u| r[u].ts()).map_or((0, 0), |x| (1, x)), r[l].ts().unwrap_or(i64::MIN));
    for r in t.files.iter().flatten() {
        let V::S(id) = &r[k] else { continue };
        if best.get(id).is_none_or(|b| rank(r) > rank(b)) {
            best.insert(id.clone(), r);
        }
    }
    best.into_values().filter(|r| t.is_deleted.is_none_or(|d| r[d] != V::B(true))).collect()
}

#[test]
fn scale_1_identities_and_independent_pipeline() {
    let cfg = GenConfig { scale: 1.0, ..GenConfig::default() };
    let tables = generate(&cfg);
    let raw = tempfile::tempdir().unwrap();
    write(&tables, raw.path()).unwrap();
    let project = reference_project();
    let vars = format!("{{raw_root: '{}'}}", raw.path().display());
    tally(project.path(), &["build", "-q", "--vars", &vars]).assert_code(0);
    let wh = project.path().join("warehouse");
    let field = |row: &str, name: &str| -> String {
        row.split(", ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {row}"))
            .to_string()
    };

    // Waterfall identity to the cent, and starting(M) = ending(M-1).
    let wf = rows(&read_delta(&wh.join("arr_waterfall_monthly")));
    assert!(wf.len() >= 24, "{} months", wf.len());
    let mut prev_end = 0i128;
    for row in &wf {
        let c = |n: &str| cents(&field(row, n));
        assert_eq!(
            c("ending_arr"),
            c("starting_arr") + c("new_arr") + c("reactivation_arr") + c("expansion_arr")
                - c("contraction_arr")
                - c("churned_arr"),
            "{row}"
        );
        assert_eq!(c("starting_arr"), prev_end, "{row}");
        assert_eq!(c("net_new_arr"), c("ending_arr") - c("starting_arr"));
        prev_end = c("ending_arr");
    }
    assert!(prev_end > 0);

    // 0 <= GRR <= 1 and GRR <= NRR.
    let ret = rows(&read_delta(&wh.join("retention_monthly")));
    assert!(ret.len() >= 12);
    for row in &ret {
        let (nrr, grr): (f64, f64) = (field(row, "nrr").parse().unwrap(), field(row, "grr").parse().unwrap());
        assert!((0.0..=1.0).contains(&grr) && grr <= nrr + 1e-12, "{row}");
    }

    // Pipeline coverage, recomputed from the raw rows.
    let t = |n: &str| tables.iter().find(|t| t.name == n).unwrap();
    let fx_t = t("fx_rates");
    let mut fx: BTreeMap<(String, i32), (i64, i128)> = BTreeMap::new(); // (currency, month) -> (loaded, rate 1e-8)
    for r in fx_t.files.iter().flatten() {
        if let (V::S(c), V::Day(m), V::D(rate), Some(l)) = (&r[0], &r[1], &r[2], r[3].ts())
            && fx.get(&(c.clone(), *m)).is_none_or(|(bl, _)| l > *bl)
        {
            fx.insert((c.clone(), *m), (l, *rate));
        }
    }
    let rate = |currency: &str, day: i32| -> Option<i128> {
        if currency == "USD" {
            return Some(100_000_000);
        }
        let d = date(day);
        let month = tally::generate::day(chrono::NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap());
        fx.range((currency.to_string(), i32::MIN)..=(currency.to_string(), month))
            .next_back()
            .map(|(_, (_, r))| *r)
    };
    let users = t("crm_users");
    let quota: i128 = staged(users, "user_id")
        .iter()
        .filter(|r| r[col(users, "role")] == V::S("AE".into()) && r[col(users, "is_active")] == V::B(true))
        .map(|r| if let V::D(q) = r[col(users, "quarterly_quota")] { q } else { 0 })
        .sum();
    let opps = t("crm_opportunities");
    let (ty, st, amt, cur, close) = (
        col(opps, "opportunity_type"),
        col(opps, "stage"),
        col(opps, "amount"),
        col(opps, "currency"),
        col(opps, "close_date"),
    );
    #[derive(Default)]
    struct Q {
        won: i128,
        open: i128,
        weighted_1e4: i128,
    }
    let mut quarters: BTreeMap<String, Q> = BTreeMap::new();
    for r in staged(opps, "opportunity_id") {
        let V::Day(day) = r[close] else { continue };
        let d = date(day);
        let q = quarters.entry(format!("{}-Q{}", d.year(), (d.month() - 1) / 3 + 1)).or_default();
        let (V::S(kind), V::S(stage), V::D(amount), V::S(currency)) = (&r[ty], &r[st], &r[amt], &r[cur])
        else {
            continue;
        };
        if kind != "New Business" && kind != "Expansion" {
            continue;
        }
        let Some(usd) = rate(currency, day).map(|rt| div_round(amount * rt, 100_000_000)) else { continue };
        let prob = match stage.as_str() {
            "Prospecting" => 5,
            "Discovery" => 10,
            "Demo" => 20,
            "Proposal" => 40,
            "Negotiation" => 70,
            _ => 0,
        };
        match stage.as_str() {
            "Closed Won" => q.won += usd,
            "Closed Lost" => {}
            _ => {
                q.open += usd;
                q.weighted_1e4 += usd * prob;
            }
        }
    }
    let pc = rows(&read_delta(&wh.join("pipeline_coverage_quarterly")));
    assert_eq!(pc.len(), quarters.len());
    for row in &pc {
        let q = &quarters[&field(row, "quarter")];
        assert_eq!(cents(&field(row, "quota_usd")), quota, "{row}");
        assert_eq!(cents(&field(row, "closed_won_usd")), q.won, "{row}");
        assert_eq!(cents(&field(row, "open_pipeline_usd")), q.open, "{row}");
        assert_eq!(cents(&field(row, "weighted_pipeline_usd")), div_round(q.weighted_1e4, 100), "{row}");
        let remaining = quota - q.won;
        let coverage = field(row, "pipeline_coverage");
        if remaining > 0 {
            let want = q.open as f64 / remaining as f64;
            assert!((coverage.parse::<f64>().unwrap() - want).abs() < 1e-9, "{row}");
        } else {
            assert_eq!(coverage, "NULL", "{row}");
        }
    }
}
