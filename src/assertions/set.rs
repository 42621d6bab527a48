//! Every check of one relation, parsed once, at compile time, into what the
//! build planner and the auditor ask of it: the checks, the duplicates keys
//! that can be counted as rows pass, and the other relations they read.

use std::collections::BTreeMap;

use super::check::Assertion;
use super::evaluate::completeness_by_key;
use super::key_runs::Counted;
use super::kinds::Kind;
use super::verdict::Severity;

/// A relation's checks, in declaration order, each with a unique name.
#[derive(Debug, Clone, Default)]
pub struct CheckSet {
    checks: Vec<Assertion>,
    /// Duplicates checks on every row (no `where`), by key columns -> the
    /// duplicated keys to keep: what a write or a staged view can count.
    keys: Vec<(Vec<String>, usize)>,
}

impl CheckSet {
    /// No checks.
    pub const EMPTY: CheckSet = CheckSet { checks: Vec::new(), keys: Vec::new() };

    /// Two checks of one kind on the same columns get `_2`, `_3`... (dbt adds a hash).
    pub fn new(mut checks: Vec<Assertion>) -> Self {
        let mut seen = BTreeMap::<String, usize>::new();
        for a in &mut checks {
            let n = seen.entry(a.name.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                a.name = format!("{}_{n}", a.name);
            }
        }
        let mut keys: BTreeMap<Vec<String>, usize> = BTreeMap::new();
        for a in &checks {
            if let Kind::Duplicates(d) = &a.kind
                && a.filter.is_none()
            {
                let keep = keys.entry(d.columns.clone()).or_default();
                *keep = (*keep).max(a.rows_kept());
            }
        }
        CheckSet { checks, keys: keys.into_iter().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    pub fn checks(&self) -> &[Assertion] {
        &self.checks
    }

    /// The checks, reading the relation as `relation_sql` (the staged files
    /// of a write, say) instead of by its name.
    pub fn on(&self, relation_sql: &str) -> Vec<Assertion> {
        self.checks
            .iter()
            .map(|a| {
                let mut a = a.clone();
                if !a.reads_upstream_loads() {
                    a.relation_sql = relation_sql.to_string();
                }
                a
            })
            .collect()
    }

    /// The duplicates checks that can be counted before they run (on every
    /// row: no `where`), as (key columns, duplicated keys to keep).
    pub fn keys_to_count(&self) -> &[(Vec<String>, usize)] {
        &self.keys
    }

    /// The other relations the checks read (relationships, reconciliation).
    pub fn other_relations(&self) -> impl Iterator<Item = &str> {
        self.checks.iter().filter_map(|a| a.kind.other_relation())
    }

    /// The checks `keep` keeps, as a set of their own (names unchanged).
    pub fn filter(&self, keep: impl Fn(&Assertion) -> bool) -> CheckSet {
        let checks: Vec<Assertion> = self.checks.iter().filter(|a| keep(a)).cloned().collect();
        let keys = self
            .keys
            .iter()
            .filter(|(key, _)| {
                checks.iter().any(|a| matches!(&a.kind, Kind::Duplicates(d) if &d.columns == key))
            })
            .cloned()
            .collect();
        CheckSet { checks, keys }
    }

    /// The duplicates checks split from the others, as (others, duplicates),
    /// when they can be counted while a view that sorts the relation runs
    /// (see [`TableKeys`](crate::materialize::TableKeys)): every one of them
    /// warn-level, so that none holds back the relation's readers, and on
    /// every row (no `where`). None when there are none or they cannot.
    pub fn warned_duplicates(&self) -> Option<(CheckSet, CheckSet)> {
        let is_duplicates = |a: &Assertion| matches!(a.kind, Kind::Duplicates(_));
        let duplicates: Vec<&Assertion> = self.checks.iter().filter(|a| is_duplicates(a)).collect();
        let all_warned = duplicates.iter().all(|a| a.severity == Severity::Warn && a.filter.is_none());
        (!duplicates.is_empty() && all_warned)
            .then(|| (self.filter(|a| !is_duplicates(a)), self.filter(is_duplicates)))
    }

    /// Whether a query of the duplicates checks would also answer one of the
    /// completeness checks (of the same key, on every row: see
    /// [`completeness_by_key`]).
    pub fn duplicates_answer_completeness(&self) -> bool {
        let all: Vec<usize> = (0..self.checks.len()).collect();
        !completeness_by_key(&self.checks, &all, &Counted::new()).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertions::{Completeness, Duplicates, Freshness, Threshold};

    fn check(name: &str, kind: Kind, severity: Severity) -> Assertion {
        Assertion {
            name: name.into(),
            relation: "m".into(),
            relation_sql: "\"m\"".into(),
            kind,
            severity,
            filter: None,
            warn_if: Threshold::NONZERO,
            error_if: Threshold::NONZERO,
            limit: None,
            file: "models/m.yml".into(),
            line: 3,
        }
    }

    fn unique(columns: &[&str], severity: Severity) -> Assertion {
        let columns = columns.iter().map(|c| c.to_string()).collect();
        check("unique_m_id", Kind::Duplicates(Duplicates { columns, max_ratio: 0.0 }), severity)
    }

    #[test]
    fn names_are_made_unique_and_keys_counted_once() {
        let set = CheckSet::new(vec![unique(&["id"], Severity::Error), unique(&["id"], Severity::Warn)]);
        let names: Vec<&str> = set.checks().iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["unique_m_id", "unique_m_id_2"]);
        assert_eq!(set.keys_to_count().len(), 1);
        assert_eq!(set.keys_to_count()[0].0, ["id"]);
    }

    #[test]
    fn warned_duplicates_split_only_when_every_one_warns() {
        let not_null = check(
            "not_null_m_id",
            Kind::Completeness(Completeness { columns: vec!["id".into()], min_ratio: 1.0 }),
            Severity::Error,
        );
        let warned = CheckSet::new(vec![not_null.clone(), unique(&["id"], Severity::Warn)]);
        let (others, duplicates) = warned.warned_duplicates().expect("split");
        assert_eq!(others.checks().len(), 1);
        assert!(others.keys_to_count().is_empty());
        assert_eq!(duplicates.keys_to_count().len(), 1);
        let blocking = CheckSet::new(vec![not_null, unique(&["id"], Severity::Error)]);
        assert!(blocking.warned_duplicates().is_none());
    }

    #[test]
    fn on_retargets_all_but_upstream_loads() {
        let mut fresh = check(
            "freshness_m",
            Kind::Freshness(Freshness {
                column: super::super::check::UPSTREAM_LOADED_AT.into(),
                upstream: vec![],
                warn_after_hours: Some(1.0),
                error_after_hours: None,
            }),
            Severity::Warn,
        );
        fresh.relation_sql = "(select ...) upstream".into();
        let set = CheckSet::new(vec![unique(&["id"], Severity::Error), fresh]);
        let on = set.on("\"__staged\"");
        assert_eq!(on[0].relation_sql, "\"__staged\"");
        assert_eq!(on[1].relation_sql, "(select ...) upstream");
    }
}
