//! The verdicts of a build's source checks, which the sources' readers
//! await before they publish (not before they start): a reader computes its
//! rows while the source is checked, so a long source check is not a step
//! of the critical path. A reader of a source that failed publishes nothing
//! and is reported skipped, as if it had waited.

use std::collections::BTreeMap;

use tokio::sync::watch;

use crate::executor::Slots;

/// A source, by (source name, table name).
pub type SourceKey = (String, String);

/// One verdict per checked source: `None` while its checks run, then
/// `Some(None)` when they passed or `Some(Some(why))` when they failed.
///
/// A reader waiting for a verdict does no work, so it should not hold one of
/// the run's `threads`: it [parks](Slots::park) while it waits.
#[derive(Default)]
pub struct SourceVerdicts {
    cells: BTreeMap<SourceKey, watch::Sender<Option<Option<String>>>>,
}

impl SourceVerdicts {
    pub fn new<'a>(checked: impl IntoIterator<Item = &'a SourceKey>) -> Self {
        let cells = checked.into_iter().map(|k| (k.clone(), watch::Sender::new(None))).collect();
        SourceVerdicts { cells }
    }

    /// Record `key`'s verdict: why its checks failed, if they did. The first one stands.
    pub fn give(&self, key: &SourceKey, failed: Option<String>) {
        if let Some(cell) = self.cells.get(key) {
            cell.send_if_modified(|v| {
                let first = v.is_none();
                if first {
                    *v = Some(failed);
                }
                first
            });
        }
    }

    /// A verdict for `key` that says its checks stopped, unless one is given
    /// first: dropped when the checking task ends, even by a panic, so no
    /// reader waits forever.
    pub fn guard(&self, key: &SourceKey) -> impl Drop + '_ {
        struct Guard<'a>(&'a SourceVerdicts, SourceKey);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.give(&self.1, Some("its checks stopped on an internal error (see the log)".into()));
            }
        }
        Guard(self, key.clone())
    }

    /// The first of `sources` whose checks failed, among the verdicts given so far.
    pub fn failed_now<'a>(&self, sources: &'a [SourceKey]) -> Option<(&'a SourceKey, String)> {
        sources.iter().find_map(|k| Some((k, self.cells.get(k)?.borrow().clone()??)))
    }

    /// Wait for the verdicts of `sources` (those checked), parked in `slots`;
    /// the first that failed.
    pub async fn failed<'a>(
        &self,
        sources: &'a [SourceKey],
        slots: &Slots,
    ) -> Option<(&'a SourceKey, String)> {
        for key in sources {
            let Some(cell) = self.cells.get(key) else { continue };
            let mut rx = cell.subscribe();
            let _parked = rx.borrow().is_none().then(|| slots.park());
            // The sender lives as long as `self`: waiting cannot fail.
            let verdict = rx.wait_for(Option::is_some).await.ok().and_then(|v| v.clone()).flatten();
            if let Some(why) = verdict {
                return Some((key, why));
            }
        }
        None
    }
}

/// Why a reader of `source` publishes nothing.
pub fn failed_source_message(source: &SourceKey, why: &str) -> String {
    format!("source `{}.{}` failed its checks: {why}", source.0, source.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> SourceKey {
        ("raw".into(), t.into())
    }

    #[tokio::test]
    async fn readers_wait_for_the_verdicts_of_their_checked_sources() {
        let (a, b, unchecked) = (key("a"), key("b"), key("c"));
        let verdicts = std::sync::Arc::new(SourceVerdicts::new([&a, &b]));
        let slots = std::sync::Arc::new(Slots::default());
        let sources = vec![unchecked.clone(), a.clone(), b.clone()];
        assert_eq!(verdicts.failed_now(&sources), None);
        let waiting = {
            let (v, s, slots) = (verdicts.clone(), sources.clone(), slots.clone());
            tokio::spawn(async move { v.failed(&s, &slots).await.map(|(k, why)| (k.clone(), why)) })
        };
        verdicts.give(&a, None);
        slots.a_step_parks().await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "b's verdict is still due");
        assert_eq!(slots.parked(), 1);
        verdicts.give(&b, Some("3 null ids".into()));
        verdicts.give(&b, None); // the first verdict stands
        assert_eq!(waiting.await.unwrap(), Some((b.clone(), "3 null ids".to_string())));
        assert_eq!(slots.parked(), 0);
        assert_eq!(verdicts.failed_now(&sources), Some((&b, "3 null ids".to_string())));
        assert_eq!(verdicts.failed(&[unchecked, a], &slots).await, None);
    }

    #[tokio::test]
    async fn checks_that_stop_without_a_verdict_fail_their_source() {
        let (a, b) = (key("a"), key("b"));
        let verdicts = SourceVerdicts::new([&a, &b]);
        let slots = Slots::default();
        drop(verdicts.guard(&a));
        {
            let _guard = verdicts.guard(&b);
            verdicts.give(&b, None);
        }
        assert!(
            verdicts
                .failed(std::slice::from_ref(&a), &slots)
                .await
                .is_some_and(|(_, why)| why.contains("internal error"))
        );
        assert_eq!(verdicts.failed(std::slice::from_ref(&b), &slots).await, None);
    }
}
