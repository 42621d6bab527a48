//! The business behind the raw tables: users, accounts, subscriptions with
//! expansion, contraction, churn and reactivation, opportunities and their
//! stage history, a lead funnel, fx rates and go-to-market spend. Then the
//! connector defects, applied per table.

use super::table::{Col, Row, Table, V};
use super::{DAY_US, GenConfig, HOUR_US, Rng, add_months, day, month_start, us};

fn s(x: impl Into<String>) -> V {
    V::S(x.into())
}

fn count(base: f64, scale: f64, min: usize) -> usize {
    ((base * scale).round() as usize).max(min)
}

struct Clock {
    start: i32,
    as_of: i32,
    /// Last instant data can have been loaded: as_of 23:59.
    end_us: i64,
}

impl Clock {
    /// Load time of a row last touched at `t`: minutes to hours later, never after `end_us`.
    fn loaded(&self, rng: &mut Rng, t: i64) -> i64 {
        (t + rng.range(5 * 60_000_000, 3 * HOUR_US)).min(self.end_us)
    }

    fn ts_between(&self, rng: &mut Rng, lo: i64, hi: i64) -> i64 {
        rng.range(lo, hi.min(self.end_us - HOUR_US).max(lo))
    }
}

pub fn generate(cfg: &GenConfig) -> Vec<Table> {
    let clock = Clock {
        start: day(cfg.start),
        as_of: day(cfg.as_of),
        end_us: us(day(cfg.as_of)) + DAY_US - 60_000_000,
    };
    let root = Rng::new(cfg.seed);
    let users = users(cfg, &clock, &mut root.fork(1));
    let ae_ids: Vec<String> = users.files[0].iter().filter(|r| r[2] == s("AE")).map(|r| id(&r[0])).collect();
    let sdr_ids: Vec<String> =
        users.files[0].iter().filter(|r| r[2] == s("SDR")).map(|r| id(&r[0])).collect();
    let (accounts, currencies) = accounts(cfg, &clock, &ae_ids, &mut root.fork(2));
    let subs = subscriptions(cfg, &clock, &currencies, &mut root.fork(3));
    let (opps, history) = opportunities(cfg, &clock, &ae_ids, &currencies, &mut root.fork(4));
    let opp_accounts: Vec<(String, V)> = opps.files[0].iter().map(|r| (id(&r[0]), r[1].clone())).collect();
    let leads = leads(cfg, &clock, &sdr_ids, &opp_accounts, &mut root.fork(5));
    let fx = fx_rates(cfg, &clock, &mut root.fork(6));
    let spend = gtm_spend(cfg, &clock, &mut root.fork(7));
    vec![users, accounts, leads, opps, history, subs, fx, spend]
}

fn id(v: &V) -> String {
    match v {
        V::S(x) => x.clone(),
        _ => String::new(),
    }
}

fn users(cfg: &GenConfig, c: &Clock, rng: &mut Rng) -> Table {
    let mut t = Table::spec("crm_users");
    let n = count(250.0, cfg.scale, 12);
    for i in 0..n {
        let role = match i % 10 {
            0..=4 => "AE",
            5 | 6 => "SDR",
            7 | 8 => "CSM",
            _ => "MANAGER",
        };
        let quota = if role == "AE" { V::D(rng.range(150_000, 400_000) as i128 * 100) } else { V::Null };
        let updated = c.ts_between(rng, us(c.start), c.end_us);
        t.files[0].push(vec![
            s(format!("U{i:05}")),
            s(format!("User {i}")),
            s(role),
            s(*rng.pick(&["Velocity", "Enterprise", "Growth"])),
            s(*rng.pick(&["NA", "EMEA", "APAC", "LATAM"])),
            quota,
            V::Day(c.start - rng.range(30, 900) as i32),
            V::B(rng.chance(0.9)),
            V::Ts(updated),
            V::Ts(c.loaded(rng, updated)),
        ]);
    }
    t
}

fn accounts(
    cfg: &GenConfig,
    c: &Clock,
    aes: &[String],
    rng: &mut Rng,
) -> (Table, Vec<(String, &'static str)>) {
    let mut t = Table::spec("crm_accounts");
    let n = count(20_000.0, cfg.scale, 40);
    let mut currencies = Vec::with_capacity(n);
    for i in 0..n {
        let segment = *rng.weighted(&[("SMB", 0.6), ("MM", 0.3), ("ENT", 0.1)]);
        let employees = match segment {
            "SMB" => rng.range(5, 200),
            "MM" => rng.range(200, 2000),
            _ => rng.range(2000, 50_000),
        };
        let currency = if rng.chance(cfg.foreign_currency_rate) {
            *rng.weighted(&[("EUR", 2.0), ("GBP", 1.0)])
        } else {
            "USD"
        };
        let created = rng.range(us(c.start - 365), us(c.as_of - 30));
        let updated = c.ts_between(rng, created, c.end_us);
        let account_id = format!("A{i:06}");
        currencies.push((account_id.clone(), currency));
        t.files[0].push(vec![
            s(account_id),
            s(format!("Account {i}")),
            s(*rng.pick(&["Software", "Retail", "Finance", "Healthcare", "Manufacturing"])),
            s(segment),
            s(*rng.weighted(&[("NA", 0.5), ("EMEA", 0.3), ("APAC", 0.15), ("LATAM", 0.05)])),
            V::I(employees),
            s(rng.pick(aes).clone()),
            V::Ts(created),
            V::Ts(updated),
            if rng.chance(0.01) { V::Null } else { V::B(false) },
            V::Ts(c.loaded(rng, updated)),
        ]);
    }
    (t, currencies)
}

fn subscriptions(cfg: &GenConfig, c: &Clock, accounts: &[(String, &'static str)], rng: &mut Rng) -> Table {
    let mut t = Table::spec("billing_subscriptions");
    let mut n = 0usize;
    let mut line = |t: &mut Table,
                    rng: &mut Rng,
                    account: V,
                    currency: &str,
                    plan: &str,
                    mrr: i64,
                    start: i32,
                    end: Option<i32>| {
        let touched = us(end.filter(|e| *e <= c.as_of).unwrap_or(start).min(c.as_of))
            + rng.range(HOUR_US, 20 * HOUR_US);
        let updated = touched.min(c.end_us - HOUR_US);
        t.files[0].push(vec![
            s(format!("S{n:07}")),
            account,
            s(plan),
            V::D(mrr as i128),
            s(currency),
            V::Day(start),
            end.map_or(V::Null, V::Day),
            V::Ts(updated),
            V::Ts(c.loaded(rng, updated)),
        ]);
        n += 1;
    };
    let span = (c.as_of - c.start) as i64;
    for (account_id, currency) in accounts {
        if !rng.chance(0.55) {
            continue;
        }
        let acc = s(account_id.clone());
        let plan = *rng.weighted(&[("Starter", 0.5), ("Growth", 0.35), ("Enterprise", 0.15)]);
        let mrr = match plan {
            "Starter" => rng.range(100, 500),
            "Growth" => rng.range(500, 3000),
            _ => rng.range(3000, 20_000),
        } * 100;
        let start = c.start + rng.range(0, span - 15) as i32;
        let churn = rng.chance(0.18).then(|| start + rng.range(60, 600) as i32).filter(|d| *d <= c.as_of);
        let downgrade = rng
            .chance(0.10)
            .then(|| start + rng.range(90, 500) as i32)
            .filter(|d| churn.is_none_or(|ch| *d < ch) && *d <= c.as_of);
        match downgrade {
            Some(d) => {
                line(&mut t, rng, acc.clone(), currency, plan, mrr, start, Some(d));
                line(&mut t, rng, acc.clone(), currency, plan, mrr / 2, d, churn);
            }
            None => line(&mut t, rng, acc.clone(), currency, plan, mrr, start, churn),
        }
        if rng.chance(0.25) {
            let e = start + rng.range(60, 400) as i32;
            if e <= c.as_of && churn.is_none_or(|ch| e < ch) {
                let extra = mrr / 100 * rng.range(20, 60);
                line(&mut t, rng, acc.clone(), currency, "Growth", extra, e, churn);
            }
        }
        if let Some(ch) = churn {
            if rng.chance(0.35) {
                let back = ch + rng.range(60, 300) as i32;
                if back <= c.as_of {
                    line(&mut t, rng, acc.clone(), currency, plan, mrr, back, None);
                }
            }
        } else if rng.chance(0.05) {
            // A cancellation scheduled after as_of: still active through as_of.
            let cancel = c.as_of + rng.range(5, 90) as i32;
            line(&mut t, rng, acc.clone(), currency, "Starter", 9900, start + 10, Some(cancel));
        }
    }
    // Lines for no account, and for an account the CRM does not know.
    for i in 0..count(20.0, cfg.scale, 2) {
        let acc = if i % 2 == 0 { V::Null } else { s(format!("A9{i:05}")) };
        let start = c.start + rng.range(0, span - 15) as i32;
        line(&mut t, rng, acc, "USD", "Starter", 15000, start, None);
    }
    t
}

const STAGES: [&str; 5] = ["Prospecting", "Discovery", "Demo", "Proposal", "Negotiation"];

fn opportunities(
    cfg: &GenConfig,
    c: &Clock,
    aes: &[String],
    accounts: &[(String, &'static str)],
    rng: &mut Rng,
) -> (Table, Table) {
    let mut t = Table::spec("crm_opportunities");
    let mut h = Table::spec("crm_opportunity_history");
    let n = count(100_000.0, cfg.scale, 100);
    for i in 0..n {
        let (account, currency) = match rng.f64() {
            x if x < 0.005 => (V::Null, "USD"),
            x if x < 0.005 + cfg.orphan_account_rate => (s(format!("A8{i:05}")), "USD"),
            _ => {
                let (a, cur) = rng.pick(accounts);
                (s(a.clone()), *cur)
            }
        };
        let close = c.start + rng.range(0, (c.as_of - c.start) as i64 + 270) as i32;
        let stage = if close <= c.as_of {
            *rng.weighted(&[
                ("Closed Won", 0.35),
                ("Closed Lost", 0.55),
                ("Negotiation", 0.05),
                ("Proposal", 0.05),
            ])
        } else {
            *rng.weighted(&[
                ("Prospecting", 0.3),
                ("Discovery", 0.25),
                ("Demo", 0.2),
                ("Proposal", 0.15),
                ("Negotiation", 0.1),
            ])
        };
        let category = forecast_category(stage, rng);
        let amount = V::D(rng.range(1_000, 150_000) as i128 * 100 + rng.range(0, 99) as i128);
        // Created 2 weeks to 6+ months before closing, and never after the load day.
        let created =
            (us(close) - rng.range(14, 200) * DAY_US - rng.range(0, DAY_US)).min(c.end_us - 2 * DAY_US);
        let updated = if stage.starts_with("Closed") {
            us(close) + rng.range(HOUR_US, 10 * HOUR_US)
        } else {
            c.ts_between(rng, created, c.end_us)
        };
        let updated = updated.min(c.end_us - HOUR_US).max(created);
        let opp_id = format!("O{i:07}");
        t.files[0].push(vec![
            s(opp_id.clone()),
            account,
            s(rng.pick(aes).clone()),
            s(*rng.weighted(&[("New Business", 0.5), ("Expansion", 0.35), ("Renewal", 0.15)])),
            s(stage),
            s(category),
            amount.clone(),
            s(currency),
            V::Day(close),
            V::Ts(created),
            V::Ts(updated),
            V::B(false),
            V::Ts(c.loaded(rng, updated)),
        ]);
        // Stage history: a walk up the funnel ending in the current stage.
        let steps = rng.range(1, 3) as usize;
        let mut at = created;
        for k in 0..steps {
            let next = at + rng.range(HOUR_US, 20 * DAY_US);
            if next >= updated {
                // The walk reached the current stage early: one change per instant.
                break;
            }
            at = next;
            let st = STAGES[k.min(STAGES.len() - 1)];
            h.files[0].push(vec![
                s(opp_id.clone()),
                s(st),
                s(forecast_category(st, rng)),
                amount.clone(),
                V::Day(close),
                V::Ts(at),
                V::Ts(c.loaded(rng, at)),
            ]);
        }
        let last = updated.max(at + 1);
        h.files[0].push(vec![
            s(opp_id),
            s(stage),
            s(category),
            amount,
            V::Day(close),
            V::Ts(last),
            V::Ts(c.loaded(rng, last)),
        ]);
    }
    (t, h)
}

fn forecast_category(stage: &str, rng: &mut Rng) -> &'static str {
    match stage {
        "Closed Won" => "Closed",
        "Closed Lost" => "Omitted",
        "Negotiation" => "Commit",
        "Proposal" => "Best Case",
        _ => rng.weighted::<&'static str>(&[("Pipeline", 0.7), ("Upside", 0.3)]),
    }
}

fn leads(cfg: &GenConfig, c: &Clock, sdrs: &[String], opps: &[(String, V)], rng: &mut Rng) -> Table {
    let mut t = Table::spec("crm_leads");
    let n = count(150_000.0, cfg.scale, 150);
    let step = |rng: &mut Rng, from: Option<i64>, p: f64| -> Option<i64> {
        let f = from?;
        let next = f + rng.range(HOUR_US, 25 * DAY_US);
        (rng.chance(p) && next < c.end_us - HOUR_US).then_some(next)
    };
    for i in 0..n {
        let created = rng.range(us(c.start), c.end_us - 2 * HOUR_US);
        let mql = step(rng, Some(created), 0.55);
        let sql = step(rng, mql, 0.5);
        let converted = step(rng, sql, 0.45);
        let (acc, opp) = match converted {
            Some(_) if rng.chance(0.03) => (V::Null, s(format!("O9{i:06}"))),
            Some(_) => {
                let (o, a) = rng.pick(opps);
                (a.clone(), s(o.clone()))
            }
            None => (V::Null, V::Null),
        };
        let status = match (mql, sql, converted) {
            (_, _, Some(_)) => "Converted",
            (_, Some(_), _) => "SQL",
            (Some(_), _, _) => "MQL",
            _ if rng.chance(0.3) => "Disqualified",
            _ => "Open",
        };
        let updated = converted.or(sql).or(mql).unwrap_or(created) + rng.range(60_000_000, HOUR_US);
        let updated = updated.min(c.end_us - 60_000_000);
        let ts = |v: Option<i64>| v.map_or(V::Null, V::Ts);
        t.files[0].push(vec![
            s(format!("L{i:07}")),
            s(format!("lead{i}@example.com")),
            s(format!("Company {}", i % 5000)),
            s(*rng.pick(&["Web", "Event", "Referral", "Outbound", "Partner"])),
            s(status),
            s(rng.pick(sdrs).clone()),
            V::Ts(created),
            ts(mql),
            ts(sql),
            ts(converted),
            acc,
            opp,
            V::Ts(updated),
            V::B(false),
            V::Ts(c.loaded(rng, updated)),
        ]);
    }
    t
}

fn fx_rates(cfg: &GenConfig, c: &Clock, rng: &mut Rng) -> Table {
    let mut t = Table::spec("fx_rates");
    let first = month_start(c.start);
    let months: Vec<i32> = (0..).map(|k| add_months(first, k)).take_while(|m| *m <= c.as_of).collect();
    let mut missing = std::collections::BTreeSet::new();
    while missing.len() < cfg.missing_fx_months.min(months.len().saturating_sub(1)) {
        missing.insert(months[rng.range(1, months.len() as i64 - 1) as usize]);
    }
    for (currency, mut rate) in [("EUR", 1.08f64), ("GBP", 1.27f64)] {
        for &m in &months {
            rate *= 1.0 + (rng.f64() - 0.5) * 0.03;
            if missing.contains(&m) {
                continue;
            }
            let loaded = (us(m) + rng.range(HOUR_US, 30 * HOUR_US)).min(c.end_us);
            t.files[0].push(vec![s(currency), V::Day(m), V::D((rate * 1e8).round() as i128), V::Ts(loaded)]);
        }
    }
    t
}

fn gtm_spend(cfg: &GenConfig, c: &Clock, rng: &mut Rng) -> Table {
    let mut t = Table::spec("gtm_spend");
    // Monthly USD at scale 1 (about 11,000 customers): a magic number near 1.
    let lines = [
        ("Sales", "Salaries", 3_200_000.0),
        ("Sales", "Commissions", 960_000.0),
        ("Sales", "Tools", 160_000.0),
        ("Marketing", "Paid Ads", 1_200_000.0),
        ("Marketing", "Events", 480_000.0),
        ("Marketing", "Content", 240_000.0),
    ];
    let first = month_start(c.start);
    let months: Vec<i32> = (0..).map(|k| add_months(first, k)).take_while(|m| *m <= c.as_of).collect();
    let last = months.len() - 1;
    for (k, &m) in months.iter().enumerate() {
        for (dept, cat, base) in lines {
            let cents = (base * cfg.scale.max(0.01) * (0.8 + 0.4 * rng.f64()) * 100.0).round() as i128;
            // The latest spend row lands at the end of as_of: it fixes the default as_of date.
            let loaded = if k == last && cat == "Content" {
                c.end_us
            } else {
                (us(m) + rng.range(HOUR_US, 48 * HOUR_US)).min(c.end_us)
            };
            t.files[0].push(vec![V::Day(m), s(dept), s(cat), V::D(cents), V::Ts(loaded)]);
        }
    }
    t
}

/// Connector defects, per `cfg`: re-deliveries (same key, later `_loaded_at`,
/// half of them CDC updates with a later `updated_at`), null keys, soft
/// deletes (half after an intermediate update), late loads, a stalled source.
pub fn inject_defects(t: &mut Table, cfg: &GenConfig, rng: &mut Rng) {
    let c_end = super::us(day(cfg.as_of)) + DAY_US - 60_000_000;
    let base = t.files[0].clone();
    let loaded = t.loaded_at;
    let money = t.cols.iter().position(|(_, c)| *c == Col::Money || *c == Col::Rate);
    let later = |rng: &mut Rng, row: &Row, idx: usize, lo: i64, hi: i64| -> i64 {
        (row[idx].ts().unwrap_or(0) + rng.range(lo, hi)).min(c_end)
    };
    let mut redelivered: Vec<Row> = Vec::new();
    for row in &base {
        if rng.chance(cfg.duplicate_rate) {
            let mut dup = row.clone();
            if let (true, Some(u)) = (rng.chance(0.5), t.updated_at) {
                // A CDC update: later updated_at, a changed amount.
                dup[u] = V::Ts(later(rng, row, u, HOUR_US, 72 * HOUR_US).min(c_end - HOUR_US));
                if let (Some(m), V::D(x)) = (money, &row[money.unwrap_or(0)]) {
                    dup[m] = V::D(x + x / 10);
                }
                dup[loaded] = V::Ts(later(rng, &dup, u, 60_000_000, 3 * HOUR_US));
            } else {
                dup[loaded] = V::Ts(later(rng, row, loaded, HOUR_US, 48 * HOUR_US));
            }
            redelivered.push(dup);
        }
        if let (Some(d), Some(u)) = (t.is_deleted, t.updated_at)
            && rng.chance(cfg.delete_rate)
        {
            let mut at = row[u].ts().unwrap_or(0);
            if rng.chance(0.5) {
                // An update first, then the delete arrives after it.
                let mut upd = row.clone();
                at = (at + rng.range(HOUR_US, 24 * HOUR_US)).min(c_end - 2 * HOUR_US);
                upd[u] = V::Ts(at);
                upd[loaded] = V::Ts((at + HOUR_US).min(c_end));
                redelivered.push(upd);
            }
            let mut del = row.clone();
            at = (at + rng.range(HOUR_US, 24 * HOUR_US)).min(c_end - HOUR_US);
            del[u] = V::Ts(at);
            del[d] = V::B(true);
            del[loaded] = V::Ts((at + HOUR_US / 2).min(c_end));
            redelivered.push(del);
        }
        if rng.chance(cfg.null_key_rate) && !t.key.is_empty() {
            let mut bad = row.clone();
            let k = t.key[rng.range(0, t.key.len() as i64 - 1) as usize];
            bad[k] = V::Null;
            redelivered.push(bad);
        }
    }
    for row in t.files[0].iter_mut() {
        if rng.chance(cfg.late_load_rate) {
            let from = t.updated_at.unwrap_or(loaded);
            row[loaded] = V::Ts(later(rng, row, from, 2 * DAY_US, 10 * DAY_US));
        }
    }
    t.files[1] = redelivered;
    if cfg.stalled_source.as_deref() == Some(t.name) {
        let cutoff = c_end - cfg.stall_hours * HOUR_US;
        for file in t.files.iter_mut() {
            file.retain(|r| r[loaded].ts().is_some_and(|l| l <= cutoff));
        }
    }
}
