//! `start_response`: records the status and headers (replacing them when called again with
//! `exc_info` before the body has begun, re-raising after), and gives `write()`.

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use http::header::{HeaderName, HeaderValue};

use crate::app::{Body, Reply};

/// What the application said through `start_response` and `write()`.
#[pyclass]
#[derive(Default)]
pub struct StartResponse {
    /// The status line, as latin-1 bytes.
    status: Option<Vec<u8>>,
    /// The headers, as latin-1 bytes.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body has begun (a non-empty chunk or `write()`): the headers are final.
    started: bool,
    /// What `write()` produced, sent before the iterable's chunks.
    written: Vec<u8>,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|info| !info.is_none());
        {
            let mut me = slf.borrow_mut();
            match exc_info {
                Some(info) if me.started => return Err(reraise(slf.py(), info)?),
                None if me.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called twice without exc_info",
                    ))
                }
                _ => {}
            }
            let (status, headers) = (latin1(status)?, header_list(headers)?);
            me.status = Some(status);
            me.headers = headers;
        }
        slf.getattr(intern!(slf.py(), "write"))
    }

    /// The legacy `write()` callable.
    fn write(&mut self, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        if self.status.is_none() {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        }
        self.started |= !data.as_bytes().is_empty();
        self.written.extend_from_slice(data.as_bytes());
        Ok(())
    }
}

impl StartResponse {
    /// Takes what `write()` produced so far.
    pub(crate) fn take_written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.written)
    }

    /// Whether `write()` produced bytes not taken yet.
    pub(crate) fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    /// The `Content-Length` the application declared, if any and valid.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        let (_, value) =
            (self.headers.iter()).find(|(name, _)| name.eq_ignore_ascii_case(b"content-length"))?;
        std::str::from_utf8(value).ok()?.trim().parse().ok()
    }

    /// Notes that the body has begun; an error if `start_response` was not called.
    pub(crate) fn body_started(&mut self) -> PyResult<()> {
        if self.status.is_none() {
            return Err(PyAssertionError::new_err("body before start_response()"));
        }
        self.started = true;
        Ok(())
    }

    /// The reply, with `body`.
    pub(crate) fn reply(&mut self, body: Body) -> PyResult<Reply> {
        let status = (self.status.take())
            .ok_or_else(|| PyAssertionError::new_err("start_response() was never called"))?;
        super::reply(&status, &self.headers, body)
    }
}

/// `raise exc_info[1].with_traceback(exc_info[2])`.
fn reraise(py: Python<'_>, info: &Bound<'_, PyAny>) -> PyResult<PyErr> {
    let value = info.get_item(1)?;
    let value = value.call_method1(intern!(py, "with_traceback"), (info.get_item(2)?,))?;
    Ok(PyErr::from_value(value))
}

fn header_list(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let headers =
        (headers.cast::<PyList>()).map_err(|_| PyTypeError::new_err("headers must be a list"))?;
    headers
        .iter()
        .map(|pair| {
            let pair = pair
                .cast_into::<PyTuple>()
                .map_err(|_| PyTypeError::new_err("a header must be a tuple"))?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err(
                    "a header must be a (name, value) tuple",
                ));
            }
            let (name, value) = (latin1(&pair.get_item(0)?)?, latin1(&pair.get_item(1)?)?);
            valid_header(&name, &value)?;
            Ok((name, value))
        })
        .collect()
}

/// Refuses a header that could not be sent (a name that is not a token, a value with a line
/// break), in `start_response` itself, so that the traceback shows the application's line.
fn valid_header(name: &[u8], value: &[u8]) -> PyResult<()> {
    if HeaderName::from_bytes(name).is_err() {
        let name = String::from_utf8_lossy(name);
        return Err(PyValueError::new_err(format!(
            "invalid header name {name:?}"
        )));
    }
    if HeaderValue::from_bytes(value).is_err() {
        let name = String::from_utf8_lossy(name);
        return Err(PyValueError::new_err(format!(
            "invalid value for header {name:?}"
        )));
    }
    Ok(())
}

/// A native string as latin-1 bytes (PEP 3333); characters above U+00FF are an error.
fn latin1(text: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let text = (text.cast::<PyString>())
        .map_err(|_| PyTypeError::new_err("status and headers must be str"))?;
    text.to_cow()?
        .chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| PyValueError::new_err("a character outside latin-1"))
        })
        .collect()
}
