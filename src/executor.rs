//! A generic executor of a plan of steps: it runs each step once its edges
//! allow, the step heading the longest chain first, at most `threads` at a
//! time, and knows nothing of what a step does (see [`Runner`]).
//!
//! ```text
//!   needs(a)       starts once a succeeded; skipped when a failed or was skipped
//!   after(a)       starts once a ended, whatever became of it
//!   starts_with(a) starts once a started (it may wait for a inside, parked)
//! ```
//!
//! A step that waits inside (for a verdict, say) does no work: it
//! [parks](Slots::park) and holds none of the `threads` while it waits.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// A step's index in its plan.
pub type StepId = usize;

/// The id [`Runner::run`] is given for [background](Runner::background) work.
pub const BACKGROUND: StepId = usize::MAX;

/// One step and the edges that gate it.
#[derive(Debug, Clone)]
pub struct Planned<S> {
    pub step: S,
    pub needs: Vec<StepId>,
    pub after: Vec<StepId>,
    pub starts_with: Vec<StepId>,
    /// Higher runs first among ready steps (the planner's longest chain).
    pub priority: usize,
}

/// Why a step did not run: the step it needed that failed or was skipped
/// (`parent`), and the failed step where the skipping began (`root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    pub parent: StepId,
    pub root: StepId,
}

/// What the executor asks of the steps' owner.
pub trait Runner<S>: Send + Sync + 'static {
    type Output: Send + 'static;

    /// Run `step`; the output, and whether it succeeded (its `needs`
    /// dependents run only if it did).
    fn run(
        self: &Arc<Self>,
        id: StepId,
        step: &S,
        slots: Arc<Slots>,
    ) -> BoxFuture<'static, (Self::Output, bool)>;

    /// `step` will not run (see [`Skip`]).
    fn skipped(&self, id: StepId, step: &S, why: Skip) -> Self::Output;

    /// The task running `step` panicked.
    fn crashed(&self, id: StepId, step: &S) -> Self::Output;

    /// Work no step waits for, to run when a slot is free and no step is ready.
    fn background(&self) -> Option<S> {
        None
    }
}

/// The run's slots: how many started steps are parked (waiting, doing no work).
#[derive(Default)]
pub struct Slots {
    parked: AtomicUsize,
    wake: Notify,
}

impl Slots {
    /// Count the caller out of the running steps until the guard drops.
    pub fn park(&self) -> impl Drop + '_ {
        struct Parked<'a>(&'a Slots);
        impl Drop for Parked<'_> {
            fn drop(&mut self) {
                self.0.parked.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
        Parked(self)
    }

    /// Steps parked now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Resolves when a step parks (at once if one did since the last call).
    pub async fn a_step_parks(&self) {
        self.wake.notified().await
    }
}

/// The state of one step during a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Ended { ok: bool },
    Skipped(Skip),
}

struct Run<'p, S> {
    plan: &'p [Planned<S>],
    /// Each step's dependents, by the edge that binds them.
    needed_by: Vec<Vec<StepId>>,
    after_of: Vec<Vec<StepId>>,
    started_with: Vec<Vec<StepId>>,
    /// Edges not yet satisfied, per step.
    open: Vec<usize>,
    state: Vec<State>,
    ready: BTreeSet<(std::cmp::Reverse<usize>, StepId)>,
}

impl<'p, S> Run<'p, S> {
    fn new(plan: &'p [Planned<S>]) -> Self {
        let n = plan.len();
        let (mut needed_by, mut after_of, mut started_with) =
            (vec![vec![]; n], vec![vec![]; n], vec![vec![]; n]);
        for (id, p) in plan.iter().enumerate() {
            p.needs.iter().for_each(|&d| needed_by[d].push(id));
            p.after.iter().for_each(|&d| after_of[d].push(id));
            p.starts_with.iter().for_each(|&d| started_with[d].push(id));
        }
        let open: Vec<usize> =
            plan.iter().map(|p| p.needs.len() + p.after.len() + p.starts_with.len()).collect();
        let mut run = Run {
            plan,
            needed_by,
            after_of,
            started_with,
            open,
            state: vec![State::Waiting; n],
            ready: BTreeSet::new(),
        };
        for id in 0..n {
            if run.open[id] == 0 {
                run.push_ready(id);
            }
        }
        run
    }

    fn push_ready(&mut self, id: StepId) {
        if self.state[id] == State::Waiting {
            self.ready.insert((std::cmp::Reverse(self.plan[id].priority), id));
        }
    }

    fn satisfy(&mut self, id: StepId) {
        self.open[id] -= 1;
        if self.open[id] == 0 {
            self.push_ready(id);
        }
    }

    fn start(&mut self, id: StepId) {
        self.state[id] = State::Running;
        for d in self.started_with[id].clone() {
            self.satisfy(d);
        }
    }

    /// `id` ended (ran, or was skipped): release its dependents, and return
    /// the steps that are skipped because of it, in order.
    fn end(&mut self, id: StepId, state: State) -> Vec<(StepId, Skip)> {
        self.state[id] = state;
        let mut skipped = Vec::new();
        let mut stack = vec![id];
        while let Some(at) = stack.pop() {
            let root = match self.state[at] {
                State::Ended { ok: false } => Some(at),
                State::Skipped(skip) => Some(skip.root),
                _ => None,
            };
            for d in self.after_of[at].clone() {
                self.satisfy(d);
            }
            for d in self.needed_by[at].clone() {
                match root {
                    Some(root) if self.state[d] == State::Waiting => {
                        let skip = Skip { parent: at, root };
                        self.state[d] = State::Skipped(skip);
                        self.ready.retain(|(_, r)| *r != d);
                        skipped.push((d, skip));
                        stack.push(d);
                    }
                    Some(_) => {}
                    None => self.satisfy(d),
                }
            }
        }
        // A skipped step still starts nothing: its `starts_with` dependents
        // would wait forever, so they are released as if it started.
        for (d, _) in &skipped {
            for w in self.started_with[*d].clone() {
                self.satisfy(w);
            }
        }
        // Reported in plan order (nodes by name), not in the order found.
        skipped.sort_by_key(|(d, _)| *d);
        skipped
    }
}

/// Run `plan` with at most `threads` steps working at once; each step's
/// output, by step id (None for a step that never ended: impossible unless
/// the plan has a cycle, which the planner does not make).
pub async fn execute<S, R>(plan: &[Planned<S>], threads: usize, runner: Arc<R>) -> Vec<Option<R::Output>>
where
    S: Clone + Send + Sync + 'static,
    R: Runner<S>,
{
    let threads = threads.max(1);
    let slots = Arc::new(Slots::default());
    let mut run = Run::new(plan);
    let mut outputs: Vec<Option<R::Output>> = (0..plan.len()).map(|_| None).collect();
    let mut tasks: JoinSet<(Option<StepId>, R::Output, bool)> = JoinSet::new();
    // Which step each task runs, to blame the right one if it panics.
    let mut running: HashMap<tokio::task::Id, Option<StepId>> = HashMap::new();
    let mut background = 0usize;
    loop {
        while tasks.len().saturating_sub(slots.parked()) < threads {
            let next = run.ready.pop_first();
            let Some((_, id)) = next else {
                if background == 0
                    && let Some(step) = runner.background()
                {
                    background += 1;
                    let work = runner.run(BACKGROUND, &step, slots.clone());
                    let task = tasks.spawn(async move {
                        let (out, ok) = work.await;
                        (None, out, ok)
                    });
                    running.insert(task.id(), None);
                }
                break;
            };
            run.start(id);
            let work = runner.run(id, &plan[id].step, slots.clone());
            let task = tasks.spawn(async move {
                let (out, ok) = work.await;
                (Some(id), out, ok)
            });
            running.insert(task.id(), Some(id));
        }
        let joined = tokio::select! {
            joined = tasks.join_next_with_id() => joined,
            () = slots.a_step_parks() => continue,
        };
        let Some(joined) = joined else { break };
        let (id, out, ok) = match joined {
            Ok((task, done)) => {
                running.remove(&task);
                done
            }
            Err(e) => {
                tracing::error!("a step's task panicked: {e}");
                match running.remove(&e.id()).flatten() {
                    Some(id) => (Some(id), runner.crashed(id, &plan[id].step), false),
                    None => {
                        background = background.saturating_sub(1);
                        continue;
                    }
                }
            }
        };
        let Some(id) = id else {
            background -= 1;
            continue;
        };
        outputs[id] = Some(out);
        for (d, skip) in run.end(id, State::Ended { ok }) {
            outputs[d] = Some(runner.skipped(d, &plan[d].step, skip));
        }
    }
    outputs
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Steps are names; a name starting with `x` fails; the order of starts is kept.
    struct Log(Mutex<Vec<String>>);

    impl Runner<&'static str> for Log {
        type Output = String;

        fn run(
            self: &Arc<Self>,
            _: StepId,
            step: &&'static str,
            _: Arc<Slots>,
        ) -> BoxFuture<'static, (String, bool)> {
            let (me, step) = (self.clone(), *step);
            Box::pin(async move {
                me.0.lock().unwrap().push(step.to_string());
                (format!("ran {step}"), !step.starts_with('x'))
            })
        }

        fn skipped(&self, _: StepId, step: &&'static str, why: Skip) -> String {
            format!("skipped {step} (parent {}, root {})", why.parent, why.root)
        }

        fn crashed(&self, _: StepId, step: &&'static str) -> String {
            format!("crashed {step}")
        }
    }

    fn step(
        step: &'static str,
        needs: &[StepId],
        after: &[StepId],
        priority: usize,
    ) -> Planned<&'static str> {
        Planned { step, needs: needs.to_vec(), after: after.to_vec(), starts_with: vec![], priority }
    }

    #[tokio::test]
    async fn failures_skip_what_needs_them_and_release_what_comes_after() {
        let plan = vec![
            step("xa", &[], &[], 3),
            step("b", &[0], &[], 2),
            step("c", &[1], &[], 1),
            step("d", &[], &[0], 1),
            step("e", &[], &[], 9),
        ];
        let log = Arc::new(Log(Mutex::new(vec![])));
        let out = execute(&plan, 1, log.clone()).await;
        let out: Vec<String> = out.into_iter().map(Option::unwrap).collect();
        assert_eq!(
            out,
            ["ran xa", "skipped b (parent 0, root 0)", "skipped c (parent 1, root 0)", "ran d", "ran e"]
        );
        // The highest priority first; d only after xa ended.
        assert_eq!(*log.0.lock().unwrap(), ["e", "xa", "d"]);
    }

    #[tokio::test]
    async fn a_step_starts_with_another() {
        let mut plan = vec![step("a", &[], &[], 1), step("b", &[], &[], 5)];
        plan[1].starts_with = vec![0];
        let log = Arc::new(Log(Mutex::new(vec![])));
        execute(&plan, 1, log.clone()).await;
        assert_eq!(*log.0.lock().unwrap(), ["a", "b"]);
    }
}
