//! Rust futures as asyncio awaitables, safe at interpreter exit and after `fork()`.
//!
//! The futures run on one process-wide tokio runtime without the GIL. A forked child
//! gets a runtime of its own on first use ([`runtime`]): the parent's worker threads
//! do not exist in the child, so a shared runtime would hang every call there.
//!
//! Calls start at the end of their loop's turn, all those of one turn together
//! (`start`): waking a parked tokio worker is a futex wake-up of an idle CPU, about
//! 30 us of the calling thread's CPU on a virtual machine, once per turn instead of
//! once per call (a FastAPI request makes two calls, a turn serves several requests).
//!
//! Results go to one delivery thread per process, which attaches to Python once
//! for everything that finished meanwhile and wakes each event loop once per batch
//! (`call_soon_threadsafe`): under load, hundreds of results cost one GIL
//! acquisition and one loop wake-up instead of one each.
//!
//! Why not `pyo3_async_runtimes::tokio::future_into_py`: its delivering thread may
//! still be attached (dropping references, releasing its thread state) after the
//! awaiting coroutine resumed, so a script that awaits its last call and exits
//! races interpreter finalization and crashes (SIGSEGV, or "PyGILState_Release:
//! thread state must be current"). Here every attachment is counted, and
//! [`shutdown`] (registered with `atexit`) stops new attachments and waits for
//! the running ones before Python finalizes. After that, results are dropped
//! without touching Python.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::{intern, IntoPyObjectExt};
use tokio::runtime::{Builder, Runtime};

static CLOSING: AtomicBool = AtomicBool::new(false);
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// The most results delivered under one attachment.
const BATCH: usize = 1024;

/// A finished call: turns its result into Python objects, with the GIL held.
type Delivery = Box<dyn for<'py> FnOnce(Python<'py>) -> Resolved + Send>;

/// A future, whether it succeeded, and its result or exception.
type Outcome = (Py<PyAny>, bool, Py<PyAny>);

/// Where results go (futures of `event_loop`) and what they are.
struct Resolved {
    event_loop: Py<PyAny>,
    outcomes: Vec<Outcome>,
}

/// Runs `fut` on tokio and returns an asyncio future of the running loop that
/// resolves with its result (or raises its error). Cancelling the asyncio future
/// abandons the result; the core call itself runs to its end (bounded by the
/// pool's timeouts), so nothing is half-applied.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let running = pyo3_async_runtimes::get_running_loop(py)?;
    let py_fut = running.call_method0(intern!(py, "create_future"))?;
    let (event_loop, target) = (running.clone().unbind(), py_fut.clone().unbind());
    let courier = courier()?;
    start(
        &running,
        Box::pin(async move {
            let result = fut.await;
            let delivery: Delivery = Box::new(move |py| Resolved {
                event_loop,
                outcomes: vec![outcome(target, result.and_then(|v| v.into_py_any(py)), py)],
            });
            // Fails only if the delivery thread is gone, i.e. the process is exiting.
            if let Err(unsent) = courier.send(delivery) {
                std::mem::forget(unsent);
            }
        }),
    )?;
    Ok(py_fut)
}

/// A call to start on tokio.
type Job = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// The calls made on this thread since its loop last started them, the loop
/// that will start them next (held, so that no other loop can have its address),
/// and the process that made them.
struct Queued {
    jobs: Vec<Job>,
    scheduled_on: Option<Py<PyAny>>,
    pid: u32,
}

thread_local! {
    static QUEUED: std::cell::RefCell<Queued> = const {
        std::cell::RefCell::new(Queued { jobs: Vec::new(), scheduled_on: None, pid: 0 })
    };
}

/// Forgets what a parent queued before `fork()`: its calls belong to its pool and
/// runtime, whose threads do not exist here.
fn forget_parents(q: &mut Queued) {
    let pid = std::process::id();
    if q.pid != pid {
        std::mem::forget(std::mem::take(&mut q.jobs));
        std::mem::forget(q.scheduled_on.take());
        q.pid = pid;
    }
}

/// Starts `job` on tokio at the end of this turn of `event_loop`, with the other
/// calls made in the same turn: waking a parked tokio worker costs about 30 us of
/// this thread's CPU on a virtual machine (the futex wake-up of an idle CPU), once
/// per turn instead of once per call. The calls start in the order they were made.
fn start(event_loop: &Bound<'_, PyAny>, job: Job) -> PyResult<()> {
    let py = event_loop.py();
    let (schedule, previous) = QUEUED.with(|q| {
        let mut q = q.borrow_mut();
        forget_parents(&mut q);
        q.jobs.push(job);
        if q.scheduled_on
            .as_ref()
            .is_some_and(|l| l.as_ptr() == event_loop.as_ptr())
        {
            (false, None)
        } else {
            (true, q.scheduled_on.replace(event_loop.clone().unbind()))
        }
    });
    // Dropped after the borrow: releasing a loop may run Python code.
    drop(previous);
    if schedule {
        // A loop that stopped before it started them (closed meanwhile) is not
        // this one: this loop starts them all.
        let started = Bound::new(py, Start)
            .and_then(|start| event_loop.call_method1(intern!(py, "call_soon"), (start,)));
        if let Err(e) = started {
            // This call is not made (the caller gets the error); the others start now.
            drop(QUEUED.with(|q| q.borrow_mut().jobs.pop()));
            Start::all()?;
            return Err(e);
        }
    }
    Ok(())
}

/// Starts the calls queued on this thread (`call_soon` from `start`).
#[pyclass(frozen)]
struct Start;

impl Start {
    fn all() -> PyResult<()> {
        let (jobs, scheduled_on) = QUEUED.with(|q| {
            let mut q = q.borrow_mut();
            forget_parents(&mut q);
            (std::mem::take(&mut q.jobs), q.scheduled_on.take())
        });
        drop(scheduled_on);
        let rt = runtime()?;
        if jobs.len() == 1 {
            for job in jobs {
                rt.spawn(job);
            }
        } else if !jobs.is_empty() {
            // One wake-up from here; the worker spawns the rest on its own queue.
            rt.spawn(async move {
                for job in jobs {
                    tokio::spawn(job);
                }
            });
        }
        Ok(())
    }
}

#[pymethods]
impl Start {
    fn __call__(&self) -> PyResult<()> {
        Start::all()
    }
}

/// Runs `fut` on tokio and settles `futures` (asyncio futures of the running loop)
/// with its answers, the first future with the first answer and so on (a future
/// without an answer gets a `RuntimeError`): one task, one delivery and one
/// loop wake-up for them all, no future of the call's own. `answer` turns one
/// answer into the future's result, or the exception it is to raise. A future
/// already done (its caller was cancelled) is left as it is.
pub fn settle_each<F, A>(
    py: Python<'_>,
    futures: Vec<Py<PyAny>>,
    fut: F,
    answer: for<'py> fn(Python<'py>, A) -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<()>
where
    F: Future<Output = Vec<A>> + Send + 'static,
    A: Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?.unbind();
    let courier = courier()?;
    runtime()?.spawn(async move {
        let answers = fut.await;
        let delivery: Delivery = Box::new(move |py| {
            let mut answers = answers.into_iter();
            let outcomes = futures
                .into_iter()
                .map(|target| {
                    let result = answers.next().map_or_else(
                        || Err(PyRuntimeError::new_err("keyleash lost an answer")),
                        |a| answer(py, a).map(Bound::unbind),
                    );
                    outcome(target, result, py)
                })
                .collect();
            Resolved {
                event_loop,
                outcomes,
            }
        });
        // Fails only if the delivery thread is gone, i.e. the process is exiting.
        if let Err(unsent) = courier.send(delivery) {
            std::mem::forget(unsent);
        }
    });
    Ok(())
}

/// `target`, whether `result` is a success, and its value or exception.
fn outcome(target: Py<PyAny>, result: PyResult<Py<PyAny>>, py: Python<'_>) -> Outcome {
    match result {
        Ok(v) => (target, true, v),
        Err(e) => (target, false, e.into_value(py).into_any()),
    }
}

/// An asyncio future of the running loop, already resolved with `result`: for a
/// call the core answered synchronously, without the store (`KeyLeash::validate_now`
/// and kin). Awaiting a done future returns at once, without suspending: no tokio
/// task, no delivery thread, no loop wake-up. Everything happens here, on the
/// calling thread with the GIL held, before this returns, so nothing is left to
/// race interpreter exit or to outlive a cancelled caller.
pub fn ready_into_py<'py, T>(py: Python<'py>, result: PyResult<T>) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py>,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let py_fut = event_loop.call_method0(intern!(py, "create_future"))?;
    match result.and_then(|v| v.into_bound_py_any(py)) {
        Ok(v) => py_fut.call_method1(intern!(py, "set_result"), (v,))?,
        Err(e) => py_fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(py_fut)
}

/// The sender to this process's delivery thread, started on first use (and again
/// in a forked child, where the parent's thread does not exist).
fn courier() -> PyResult<Sender<Delivery>> {
    static COURIER: Mutex<Option<(u32, Sender<Delivery>)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = COURIER.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, tx)) = slot.as_ref() {
        if *owner == pid {
            return Ok(tx.clone());
        }
    }
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("keyleash-deliver".into())
        .spawn(move || deliver_loop(&rx))
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    // A parent's sender, if any, is leaked: its thread does not exist here.
    std::mem::forget(slot.replace((pid, tx.clone())));
    Ok(tx)
}

/// The tokio runtime of this process, made on first use, and again in a forked
/// child (the parent's runtime is leaked there: its threads are gone, and
/// dropping it would wait for them).
fn runtime() -> PyResult<&'static Runtime> {
    static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    match *slot {
        Some((owner, rt)) if owner == pid => Ok(rt),
        _ => {
            let rt = Builder::new_multi_thread()
                .enable_all()
                .thread_name("keyleash")
                .build()
                .map_err(|e| PyRuntimeError::new_err(format!("cannot start tokio: {e}")))?;
            let rt: &'static Runtime = Box::leak(Box::new(rt));
            *slot = Some((pid, rt));
            Ok(rt)
        }
    }
}

fn deliver_loop(rx: &Receiver<Delivery>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter().take(BATCH - 1));
        ATTACHED.fetch_add(1, SeqCst);
        if CLOSING.load(SeqCst) {
            // Python is finalizing: never attach, never drop Python objects.
            std::mem::forget(batch);
        } else {
            Python::attach(|py| deliver(py, batch));
        }
        ATTACHED.fetch_sub(1, SeqCst);
    }
}

/// Hands each event loop its results in one `call_soon_threadsafe`.
fn deliver(py: Python<'_>, batch: Vec<Delivery>) {
    let mut per_loop: Vec<(Py<PyAny>, Vec<Outcome>)> = Vec::new();
    for delivery in batch {
        let r = delivery(py);
        match per_loop
            .iter_mut()
            .find(|(l, _)| l.as_ptr() == r.event_loop.as_ptr())
        {
            Some((_, outcomes)) => outcomes.extend(r.outcomes),
            None => per_loop.push((r.event_loop, r.outcomes)),
        }
    }
    for (event_loop, outcomes) in per_loop {
        let settle = Settle {
            outcomes: Mutex::new(outcomes),
        };
        // A closed loop raises here: nobody awaits those results any more.
        let _ = Bound::new(py, settle).and_then(|settle| {
            event_loop
                .bind(py)
                .call_method1(intern!(py, "call_soon_threadsafe"), (settle,))
        });
    }
}

/// The results of one delivery to one loop: called there (`call_soon_threadsafe`),
/// it completes each future unless it is done already (cancelled).
#[pyclass(frozen)]
struct Settle {
    outcomes: Mutex<Vec<Outcome>>,
}

#[pymethods]
impl Settle {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let outcomes = std::mem::take(
            &mut *self
                .outcomes
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (fut, ok, value) in outcomes {
            let fut = fut.bind(py);
            if !fut.call_method0(intern!(py, "done"))?.is_truthy()? {
                let method = if ok {
                    intern!(py, "set_result")
                } else {
                    intern!(py, "set_exception")
                };
                fut.call_method1(method, (value,))?;
            }
        }
        Ok(())
    }
}

/// Called at interpreter exit (`atexit`): no new attachments, and waits (at most
/// 5 s, with the GIL released) for the delivering threads already attached.
#[pyfunction]
pub fn shutdown(py: Python<'_>) {
    CLOSING.store(true, SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ATTACHED.load(SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
