//! Grouping of concurrent calls: many callers, one statement per round trip.
//!
//! On two cores shared with Postgres, what limits keyleash is the CPU each
//! statement costs on both sides, not the database's work per row. So concurrent
//! validates of one `KeyLeash` go to the store as one batch (`= ANY($1)`), and
//! concurrent charges as one transaction, decided in arrival order by
//! `spend::plan` (through the pipeline of `store/charge.rs`) exactly as if they had
//! run one at a time.
//!
//! How a call travels: it joins the queue and, if fewer than `in_flight` runners
//! are running, starts a runner task. A runner takes up to `max_batch` calls in
//! arrival order, runs them as one batch, answers each caller, and loops until the
//! queue is empty. An idle system therefore adds no wait: the first call runs at
//! once as a batch of one; calls arriving while a batch is in flight gather into
//! the next one ("group commit").
//!
//! Pipelining (`depth` > 1: the spend lanes on Postgres when
//! `Options::pipeline_depth` asks; one batch at a time measured faster by
//! default, `store/mod.rs`): a runner starts its next
//! batch as soon as the one before holds every row lock it will take ([`Locked`]),
//! not when it has committed, with at most `depth` of its batches in flight. A
//! later batch that needs a row of an earlier one then waits for that row's lock,
//! in the database, until the earlier one commits, so the order in which batches
//! take shared rows is their arrival order; rows no earlier batch holds it takes
//! at once.
//! The earlier batch never waits for a later one (it holds all its locks before
//! the later one starts): no deadlock.
//!
//! Invariants and hazards:
//! - Bounded: at most `max_queue` calls wait; one more is refused at once with
//!   `unavailable` ("queue is full") instead of growing memory when the store
//!   falls behind.
//! - A batch that fails (statement error, connection lost) fails every call in it
//!   with that error and, being one transaction, applies nothing.
//! - The runner is a spawned task: a caller that stops waiting (a cancelled
//!   request) cannot cancel a batch that other callers share. Its answer is dropped.
//! - Arrival order is queue order; a caller's outcome never depends on how the
//!   calls were cut into batches (pinned by `batch_tests.rs` and `tests/grouping.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// The future a batch executor returns: one outcome per request, in order.
pub(crate) type BatchFuture<Out> = Pin<Box<dyn Future<Output = Result<Vec<Out>>> + Send>>;

/// Runs one batch of requests against the store; fires (or drops) the [`Locked`]
/// once the batch holds every lock it will take.
pub(crate) type Executor<Req, Out> =
    Box<dyn Fn(Vec<Req>, Locked) -> BatchFuture<Out> + Send + Sync>;

/// Tells a pipelined runner that its batch holds every lock it will take, so the
/// next batch may start. Dropping it (the batch ended, or takes no lock) says the
/// same.
pub(crate) struct Locked(Option<oneshot::Sender<()>>);

impl Locked {
    /// A signal nobody waits for (a batch run outside a group, in tests).
    #[cfg(test)]
    pub fn none() -> Self {
        Locked(None)
    }

    /// The batch holds its locks: let the next one start.
    pub fn fire(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Sizes of one group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The most calls in one batch.
    pub max_batch: usize,
    /// The most calls waiting; one more is refused with `unavailable`.
    pub max_queue: usize,
    /// The most runners at once, each with its own batches (validates: several
    /// independent reads; spend lanes: one, which keeps arrival order).
    pub in_flight: usize,
    /// The most batches of one runner in flight at once, each started once the one
    /// before holds its locks (each holds one connection); 1: one after another.
    pub depth: usize,
}

type Pending<Req, Out> = (Req, oneshot::Sender<Result<Out>>);

/// One kind of call (validates, or charges) of one `KeyLeash`.
pub(crate) struct Group<Req, Out> {
    queue: Mutex<VecDeque<Pending<Req, Out>>>,
    runners: Arc<Semaphore>,
    /// The batches in flight, at most `depth` per runner.
    batches: Arc<Semaphore>,
    limits: Limits,
    exec: Executor<Req, Out>,
}

impl<Req: Send + 'static, Out: Send + 'static> Group<Req, Out> {
    /// A group that runs its batches with `exec`.
    pub fn new(limits: Limits, exec: Executor<Req, Out>) -> Arc<Self> {
        Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            runners: Arc::new(Semaphore::new(limits.in_flight.max(1))),
            batches: Arc::new(Semaphore::new(
                limits.in_flight.max(1) * limits.depth.max(1),
            )),
            limits,
            exec,
        })
    }

    /// Runs `req` as part of a batch and returns its own outcome.
    pub async fn call(self: &Arc<Self>, req: Req) -> Result<Out> {
        let rx = self.enqueue(&mut self.lock(), req);
        self.start_runner();
        Self::outcome(rx).await
    }

    /// Runs `reqs` as if each were its own [`Group::call`], in this order, joining
    /// the queue together (one lock, one runner start): a binding that gathered
    /// calls from its own event loop hands them over in one go.
    pub async fn call_many(self: &Arc<Self>, reqs: Vec<Req>) -> Vec<Result<Out>> {
        let waiting: Vec<_> = {
            let mut queue = self.lock();
            reqs.into_iter()
                .map(|req| self.enqueue(&mut queue, req))
                .collect()
        };
        self.start_runner();
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(Self::outcome(rx).await);
        }
        out
    }

    /// Queues `req`, or refuses it when the queue is full.
    fn enqueue(
        &self,
        queue: &mut VecDeque<Pending<Req, Out>>,
        req: Req,
    ) -> Result<oneshot::Receiver<Result<Out>>> {
        if queue.len() >= self.limits.max_queue {
            return Err(Error::Unavailable(
                format!(
                    "the request queue is full ({} calls are waiting for the store)",
                    self.limits.max_queue
                )
                .into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        queue.push_back((req, tx));
        Ok(rx)
    }

    async fn outcome(rx: Result<oneshot::Receiver<Result<Out>>>) -> Result<Out> {
        rx?.await
            .unwrap_or_else(|_| Err(Error::Unavailable("the batch was abandoned".into())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending<Req, Out>>> {
        // A panic while holding this lock can only come from VecDeque itself; the
        // queue is still consistent, so keep going.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a runner unless `in_flight` are running already.
    fn start_runner(self: &Arc<Self>) {
        let Ok(permit) = Arc::clone(&self.runners).try_acquire_owned() else {
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(permit).await });
    }

    async fn run(self: Arc<Self>, permit: OwnedSemaphorePermit) {
        loop {
            let batch: Vec<_> = {
                let mut queue = self.lock();
                let n = queue.len().min(self.limits.max_batch);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            if self.limits.depth <= 1 {
                self.execute(batch, Locked(None)).await;
                continue;
            }
            // Pipelined: the batch runs as its own task; the next one starts once
            // this one holds its locks (or ended), with at most `depth` in flight.
            let Ok(slot) = Arc::clone(&self.batches).acquire_owned().await else {
                break;
            };
            let (locked, held) = oneshot::channel();
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                me.execute(batch, Locked(Some(locked))).await;
                drop(slot);
            });
            let _ = held.await;
        }
        drop(permit);
        // A call may have joined after the queue looked empty but before the permit
        // was back: make sure someone runs it.
        if !self.lock().is_empty() {
            self.start_runner();
        }
    }

    /// Runs one batch and answers each of its callers.
    async fn execute(&self, batch: Vec<Pending<Req, Out>>, locked: Locked) {
        let (reqs, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let n = reqs.len();
        match (self.exec)(reqs, locked).await {
            Ok(outs) if outs.len() == n => {
                for (tx, out) in answers.into_iter().zip(outs) {
                    let _ = tx.send(Ok(out));
                }
            }
            Ok(_) => {
                for tx in answers {
                    let _ = tx.send(Err(Error::Unavailable(
                        "a batch returned the wrong number of outcomes".into(),
                    )));
                }
            }
            Err(e) => {
                for tx in answers {
                    let _ = tx.send(Err(e.for_each_caller()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn doubling(sizes: Arc<Mutex<Vec<usize>>>, fail_on: Option<u32>) -> Executor<u32, u32> {
        Box::new(move |reqs: Vec<u32>, _locked| {
            let sizes = Arc::clone(&sizes);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                sizes.lock().unwrap().push(reqs.len());
                if fail_on.is_some_and(|f| reqs.contains(&f)) {
                    return Err(Error::Unavailable("boom".into()));
                }
                Ok(reqs.iter().map(|r| r * 2).collect())
            })
        })
    }

    // Pins that concurrent calls gather into batches, each caller gets its own answer,
    // and at most `in_flight` batches run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gathers_and_answers_each_caller() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let limits = Limits {
            max_batch: 16,
            max_queue: 1000,
            in_flight: 1,
            depth: 1,
        };
        let g = Group::new(limits, doubling(Arc::clone(&sizes), None));
        let calls: Vec<_> = (0..100u32)
            .map(|i| {
                let g = Arc::clone(&g);
                tokio::spawn(async move { (i, g.call(i).await.unwrap()) })
            })
            .collect();
        for c in calls {
            let (i, out) = c.await.unwrap();
            assert_eq!(out, i * 2);
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n <= 16));
        assert!(sizes.len() < 100, "calls were grouped: {sizes:?}");
    }

    // Pins call_many: every request answered in order, grouped, the overflow refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn call_many_answers_each_in_order() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let limits = Limits {
            max_batch: 16,
            max_queue: 40,
            in_flight: 1,
            depth: 1,
        };
        let g = Group::new(limits, doubling(Arc::clone(&sizes), None));
        let out = g.call_many((0..50u32).collect()).await;
        for (i, r) in out.iter().enumerate() {
            if i < 40 {
                assert_eq!(*r.as_ref().unwrap(), u32::try_from(i).unwrap() * 2);
            } else {
                assert!(r
                    .as_ref()
                    .unwrap_err()
                    .to_string()
                    .contains("queue is full"));
            }
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.len() <= 4, "{sizes:?}");
    }

    // Pins that a failed batch fails exactly its own callers, and later batches still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_only_its_calls() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let limits = Limits {
            max_batch: 1,
            max_queue: 1000,
            in_flight: 1,
            depth: 1,
        };
        let g = Group::new(limits, doubling(sizes, Some(3)));
        for i in 0..6u32 {
            let r = g.call(i).await;
            if i == 3 {
                assert_eq!(r.unwrap_err().code(), "unavailable");
            } else {
                assert_eq!(r.unwrap(), i * 2);
            }
        }
    }

    // Pins pipelining: with depth 2, a batch starts only after the one before fired
    // its `Locked`, two batches do overlap (the earlier still committing), and
    // never more than two are in flight.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_batches_start_after_the_locks() {
        let log = Arc::new(Mutex::new(Vec::<(&'static str, usize)>::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let seq = Arc::new(AtomicUsize::new(0));
        let (l2, r2, m2, s2) = (
            Arc::clone(&log),
            Arc::clone(&running),
            Arc::clone(&most),
            Arc::clone(&seq),
        );
        let exec: Executor<u32, u32> = Box::new(move |reqs: Vec<u32>, mut locked: Locked| {
            let (log, running, most) = (Arc::clone(&l2), Arc::clone(&r2), Arc::clone(&m2));
            let n = s2.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                log.lock().unwrap().push(("start", n));
                tokio::time::sleep(Duration::from_millis(3)).await;
                log.lock().unwrap().push(("locked", n));
                locked.fire();
                tokio::time::sleep(Duration::from_millis(15)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(reqs)
            })
        });
        let limits = Limits {
            max_batch: 2,
            max_queue: 1000,
            in_flight: 1,
            depth: 2,
        };
        let g = Group::new(limits, exec);
        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let g = Arc::clone(&g);
                tokio::spawn(async move { g.call(i).await.unwrap() == i })
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap());
        }
        let log = log.lock().unwrap();
        for k in 1..seq.load(Ordering::SeqCst) {
            let started = log.iter().position(|e| *e == ("start", k)).unwrap();
            let locked = log.iter().position(|e| *e == ("locked", k - 1)).unwrap();
            assert!(
                locked < started,
                "batch {k} started before {} held its locks",
                k - 1
            );
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "two batches overlapped, never three"
        );
    }

    // Pins the bound: calls past `max_queue` are refused at once, with a message that says so.
    // The first batch is held on a gate until the queue is seen full, so the test does
    // not depend on how fast a loaded machine schedules the callers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let (g2, s2) = (Arc::clone(&gate), Arc::clone(&started));
        let exec: Executor<u32, u32> = Box::new(move |reqs: Vec<u32>, _locked| {
            let gate = Arc::clone(&g2);
            s2.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                gate.acquire().await.expect("open gate").forget();
                Ok(reqs)
            })
        });
        let limits = Limits {
            max_batch: 1,
            max_queue: 4,
            in_flight: 1,
            depth: 1,
        };
        let g = Group::new(limits, exec);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let until = |what: &str, done: &dyn Fn() -> bool| {
            assert!(std::time::Instant::now() < deadline, "{what}");
            !done()
        };
        let spawn = |i: u32| {
            let g = Arc::clone(&g);
            tokio::spawn(async move { g.call(i).await })
        };
        // The first call's batch runs (and waits at the gate), then four fill the queue.
        let mut waiting = vec![spawn(0)];
        while until("the first batch never started", &|| {
            started.load(Ordering::SeqCst) == 1
        }) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waiting.extend((1..5u32).map(spawn));
        while until("the queue never filled", &|| g.lock().len() == 4) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = g.call(99).await.unwrap_err();
        assert_eq!(refused.code(), "unavailable");
        assert!(refused.to_string().contains("queue is full"), "{refused}");
        gate.add_permits(5);
        for w in waiting {
            assert!(w.await.unwrap().is_ok());
        }
    }
}
