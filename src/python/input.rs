//! `wsgi.input` (the request body, streamed as the application reads it) and `wsgi.errors`
//! (into the server's log).

use std::io::Read;
use std::sync::Mutex;
use std::thread::{self, ThreadId};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::app::Input;

/// How much one `read()` without a size, or one line, may take.
const READ_ALL_LIMIT: usize = 64 * 1024 * 1024;

/// The request's [`Input`], lent to Python for the duration of the application call.
struct Lent(*mut Input<'static>);

// SAFETY: the pointer is only dereferenced by the thread that lent it (checked before the
// lock is taken, so no other thread ever waits on it), while the application call that lent
// it is running (the `Closing` guard clears it before the call returns or unwinds), and
// under the mutex; `Input` itself is `Send`.
unsafe impl Send for Lent {}

/// `wsgi.input`.
#[pyclass(frozen)]
pub struct WsgiInput {
    /// The worker thread that lent the input: the only one that may read it.
    owner: ThreadId,
    /// The lent input, or `None` once the request is over.
    lent: Mutex<Option<Lent>>,
}

/// Clears the loan when the application call ends.
pub struct Closing(Py<WsgiInput>);

impl Drop for Closing {
    fn drop(&mut self) {
        let lent = &self.0.get().lent;
        *lent.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl WsgiInput {
    /// Lends `input` to Python until the returned guard is dropped.
    pub fn lend<'py>(
        py: Python<'py>,
        input: &mut Input<'_>,
    ) -> PyResult<(Bound<'py, WsgiInput>, Closing)> {
        let lent = Lent((input as *mut Input<'_>).cast::<Input<'static>>());
        let object = Bound::new(
            py,
            WsgiInput {
                owner: thread::current().id(),
                lent: Mutex::new(Some(lent)),
            },
        )?;
        let closing = Closing(object.clone().unbind());
        Ok((object, closing))
    }

    /// Runs `f` on the lent input, with the GIL released while it waits for the client.
    fn with_input<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Input<'static>) -> std::io::Result<T> + Send,
    ) -> PyResult<T> {
        if self.owner != thread::current().id() {
            return Err(PyRuntimeError::new_err(
                "wsgi.input read from another thread",
            ));
        }
        let mut guard = self.lent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lent) = guard.as_mut() else {
            return Err(PyValueError::new_err(
                "wsgi.input is closed: the request is over",
            ));
        };
        // SAFETY: see `Lent`: this is the owner thread, the call is in progress (the loan is
        // still there) and the mutex is held.
        let input = unsafe { &mut *lent.0 };
        py.detach(|| f(input))
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Reads up to `limit` bytes, or to the end of the body.
    fn read_up_to(&self, py: Python<'_>, limit: usize) -> PyResult<Vec<u8>> {
        self.with_input(py, |input| {
            let mut out = Vec::new();
            input.take(limit as u64).read_to_end(&mut out)?;
            Ok(out)
        })
    }

    /// Reads a line (up to and including `\n`), at most `limit` bytes.
    fn read_line(&self, py: Python<'_>, limit: usize) -> PyResult<Vec<u8>> {
        self.with_input(py, |input| {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < limit && input.read(&mut byte)? == 1 {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Ok(line)
        })
    }
}

fn limit(size: Option<isize>) -> usize {
    match size {
        Some(n) if n >= 0 => n as usize,
        _ => READ_ALL_LIMIT,
    }
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.read_up_to(py, limit(size))?))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.read_line(py, limit(size))?))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = limit(hint);
        let (mut lines, mut total) = (Vec::new(), 0);
        loop {
            let line = self.read_line(py, READ_ALL_LIMIT)?;
            if line.is_empty() {
                return Ok(lines);
            }
            total += line.len();
            lines.push(PyBytes::new(py, &line));
            if total >= hint {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, READ_ALL_LIMIT)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: what the application writes goes to the log (target `skyrocket::wsgi`).
#[pyclass(frozen)]
pub struct ErrorLog;

#[pymethods]
impl ErrorLog {
    fn write(&self, text: &str) -> usize {
        let line = text.trim_end_matches('\n');
        if !line.is_empty() {
            log::warn!(target: "skyrocket::wsgi", "{line}");
        }
        text.len()
    }

    fn writelines(&self, lines: Vec<String>) {
        for line in lines {
            self.write(&line);
        }
    }

    fn flush(&self) {}
}
