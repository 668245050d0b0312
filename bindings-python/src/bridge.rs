//! Rust futures as asyncio awaitables, safe at interpreter exit and after `fork()`.
//!
//! The futures run on one process-wide tokio runtime without the GIL. A forked child
//! gets a runtime of its own on first use ([`runtime`]): the parent's worker threads
//! do not exist in the child, so a shared runtime would hang every call there. Their results are handed to the event loop with `call_soon_threadsafe`
//! from a blocking thread that attaches to Python briefly.
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
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use tokio::runtime::{Builder, Runtime};

use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

static CLOSING: AtomicBool = AtomicBool::new(false);
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// Runs `fut` on tokio and returns an asyncio future of the running loop that
/// resolves with its result (or raises its error). Cancelling the asyncio future
/// abandons the result; the core call itself runs to its end (bounded by the
/// pool's timeouts), so nothing is half-applied.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let py_fut = event_loop.call_method0("create_future")?;
    let target = (event_loop.unbind(), py_fut.clone().unbind());
    runtime()?.spawn(async move {
        let result = fut.await;
        // Taking the GIL may wait: do it off the tokio workers.
        tokio::task::spawn_blocking(move || deliver(target, result));
    });
    Ok(py_fut)
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

fn deliver<T>(target: (Py<PyAny>, Py<PyAny>), result: PyResult<T>)
where
    T: for<'py> IntoPyObject<'py>,
{
    ATTACHED.fetch_add(1, SeqCst);
    if CLOSING.load(SeqCst) {
        // Python is finalizing: never attach, never drop Python objects.
        std::mem::forget((target, result));
    } else {
        Python::attach(|py| {
            let (event_loop, fut) = target;
            let (ok, value) = match result.and_then(|v| v.into_py_any(py)) {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            // A closed loop raises here: nobody awaits the result any more.
            let _ = wrap_pyfunction!(resolve, py).and_then(|resolve| {
                event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (resolve, fut, ok, value))
            });
        });
    }
    ATTACHED.fetch_sub(1, SeqCst);
}

/// Runs on the loop's thread: completes `fut` unless it was cancelled meanwhile.
#[pyfunction]
fn resolve(fut: &Bound<'_, PyAny>, ok: bool, value: Bound<'_, PyAny>) -> PyResult<()> {
    if !fut.call_method0("done")?.is_truthy()? {
        let method = if ok { "set_result" } else { "set_exception" };
        fut.call_method1(method, (value,))?;
    }
    Ok(())
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
