//! Python WSGI applications (PEP 3333), with the `python` feature: CPython embedded with pyo3,
//! a Python callable as one more [`Application`].
//!
//! Each worker thread keeps one Python thread state for its whole life (see `attach`), so a
//! request costs a GIL acquisition, not a thread state. The GIL is held while Python code
//! runs and released while the worker writes the response and waits for connections.

mod body;
mod environ;
mod file_wrapper;
mod input;
mod interpreter;
mod start_response;

use std::cell::OnceCell;
use std::fmt;
use std::path::PathBuf;

use http::StatusCode;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::app::{Application, Environ, Input, Reply};

pub use interpreter::{run_exit_functions, start};

use input::WsgiInput;
use start_response::StartResponse;

thread_local! {
    /// This thread's Python thread state, kept as long as the thread lives.
    static KEPT: OnceCell<KeptState> = const { OnceCell::new() };
}

/// A Python thread state made for this thread on its first attach, deleted when the thread
/// ends (worker threads come and go as the pool resizes and restarts).
struct KeptState {
    /// What `PyGILState_Ensure` returned, for the matching release.
    gil_state: ffi::PyGILState_STATE,
    /// The state, as `PyEval_SaveThread` left it (not holding the GIL).
    thread_state: *mut ffi::PyThreadState,
}

impl KeptState {
    fn new() -> Self {
        Python::initialize();
        // SAFETY: the interpreter is initialized (above). `PyGILState_Ensure` creates this
        // thread's state and takes the GIL; `PyEval_SaveThread` gives the GIL back at once.
        // The state stays registered (its count is left at one), so later attaches on this
        // thread reuse it instead of creating and destroying one each time.
        unsafe {
            let gil_state = ffi::PyGILState_Ensure();
            let thread_state = ffi::PyEval_SaveThread();
            KeptState {
                gil_state,
                thread_state,
            }
        }
    }
}

impl Drop for KeptState {
    fn drop(&mut self) {
        // SAFETY: this runs as the thread ends, outside any attach (the GIL is not held by
        // this thread). Taking the GIL back with the saved state, then the release matching
        // the `PyGILState_Ensure` of `new`, deletes the state and frees the GIL. skyrocket
        // never finalizes the interpreter; if the embedding program did, nothing is touched.
        unsafe {
            if ffi::Py_IsInitialized() != 0 {
                ffi::PyEval_RestoreThread(self.thread_state);
                ffi::PyGILState_Release(self.gil_state);
            }
        }
    }
}

/// A WSGI application loaded from `MODULE:CALLABLE`.
pub struct PythonApp {
    /// The callable.
    app: Py<PyAny>,
    /// Where `wsgi.errors` writes go (a Python object with `write`).
    errors: Py<PyAny>,
    /// `MODULE:CALLABLE`, for messages.
    spec: String,
}

/// Why an application could not be loaded: a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

impl PythonApp {
    /// Imports `MODULE:CALLABLE` (`MODULE` alone means `MODULE:application`), with `paths`
    /// put first on `sys.path`, as gunicorn and granian do. Starts the interpreter (see
    /// [`start`]) if it is not running.
    pub fn load(spec: &str, paths: &[PathBuf]) -> Result<Self, LoadError> {
        start(None)?;
        let (module, name) = spec.split_once(':').unwrap_or((spec, "application"));
        attach(|py| {
            let sys = py.import("sys").map_err(|e| one_line(py, &e))?;
            let path = sys.getattr("path").map_err(|e| one_line(py, &e))?;
            for dir in paths.iter().rev() {
                let dir = dir.to_string_lossy();
                path.call_method1("insert", (0, dir.as_ref()))
                    .map_err(|e| one_line(py, &e))?;
            }
            let module = py.import(module).map_err(|e| one_line(py, &e))?;
            let app = module.getattr(name).map_err(|e| one_line(py, &e))?;
            if !app.is_callable() {
                return Err(LoadError(format!("{spec} is not callable")));
            }
            Ok(PythonApp {
                app: app.unbind(),
                errors: Py::new(py, input::ErrorLog)?.into_any(),
                spec: spec.to_string(),
            })
        })
        .map_err(|e| LoadError(format!("cannot load {spec}: {e}")))
    }

    /// Calls the application and collects status, headers and body; the body is iterated
    /// with the GIL held and `close()` is always called.
    fn run(&self, py: Python<'_>, env: &Environ, input: &mut Input<'_>) -> PyResult<Reply> {
        let start = Bound::new(py, StartResponse::default())?;
        let (wsgi_input, _closing) = WsgiInput::lend(py, input)?;
        let environ = environ::build(py, env, wsgi_input, self.errors.bind(py))?;
        let result = self.app.bind(py).call1((environ, &start))?;
        let body = match body::body(&result, &start) {
            Ok(body) => body,
            Err(err) => {
                body::close(&result)?;
                return Err(err);
            }
        };
        let declared = start.borrow().declared_length();
        let body = body.into_body(&result, declared)?;
        start.borrow_mut().reply(body)
    }
}

impl Application for PythonApp {
    fn call(&self, env: &Environ, input: &mut Input<'_>) -> Reply {
        attach(|py| {
            self.run(py, env, input).unwrap_or_else(|err| {
                log::error!(
                    "{} failed on {} {}:\n{}",
                    self.spec,
                    env.method(),
                    env.raw_path(),
                    traceback(py, &err)
                );
                Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            })
        })
    }
}

/// Calls `object.close()`, if it has one: a result's or a wrapped file's clean-up.
pub(crate) fn call_close(object: &Bound<'_, PyAny>) -> PyResult<()> {
    match object.getattr_opt(pyo3::intern!(object.py(), "close"))? {
        Some(close) => close.call0().map(drop),
        None => Ok(()),
    }
}

/// Runs `f` with the GIL. The first time on a thread, the thread gets a Python thread state
/// that it keeps until it ends (creating one per request would cost several microseconds).
pub(crate) fn attach<T>(f: impl for<'py> FnOnce(Python<'py>) -> T) -> T {
    KEPT.with(|kept| {
        kept.get_or_init(KeptState::new);
    });
    Python::attach(f)
}

/// An exception with its traceback, as Python prints it.
pub(crate) fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let args = (err.get_type(py), err.value(py), err.traceback(py));
        let lines = tb.call_method1("format_exception", args)?;
        let joined: String = lines.extract::<Vec<String>>()?.concat();
        Ok(joined)
    });
    formatted.unwrap_or_else(|_| err.to_string())
}

/// An exception as one line, for start-up errors.
fn one_line(py: Python<'_>, err: &PyErr) -> LoadError {
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    LoadError(format!("{kind}: {}", err.value(py)))
}

impl From<PyErr> for LoadError {
    fn from(err: PyErr) -> Self {
        LoadError(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter's thread states.
    fn thread_states() -> usize {
        // SAFETY: called with the GIL held (inside `attach`), which keeps the list still.
        unsafe {
            let mut state = ffi::PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Main());
            let mut count = 0;
            while !state.is_null() {
                count += 1;
                state = ffi::PyThreadState_Next(state);
            }
            count
        }
    }

    #[test]
    fn a_threads_python_state_ends_with_the_thread() {
        start(None).expect("Python starts");
        let before = attach(|_| thread_states());
        for _ in 0..5 {
            std::thread::spawn(|| attach(|_| ())).join().unwrap();
        }
        assert_eq!(attach(|_| thread_states()), before);
    }
}
