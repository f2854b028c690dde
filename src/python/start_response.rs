//! `start_response`: records the status and headers (replacing them when called again with
//! `exc_info` before the body has begun, re-raising after), and gives `write()`.

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::app::{Body, Reply};

/// What the application said through `start_response` and `write()`.
#[pyclass]
#[derive(Default)]
pub struct StartResponse {
    /// The status's code (checked when given; the reason phrase sent is the code's own).
    status: Option<StatusCode>,
    /// The headers (checked when given).
    headers: HeaderMap,
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
            let (status, headers) = (status_code(&latin1(status)?)?, header_list(headers)?);
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
        crate::http::declared_length(&self.headers)
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
        let mut reply = Reply::new(status).body(body);
        reply.headers = std::mem::take(&mut self.headers);
        Ok(reply)
    }
}

/// `raise exc_info[1].with_traceback(exc_info[2])`.
fn reraise(py: Python<'_>, info: &Bound<'_, PyAny>) -> PyResult<PyErr> {
    let value = info.get_item(1)?;
    let value = value.call_method1(intern!(py, "with_traceback"), (info.get_item(2)?,))?;
    Ok(PyErr::from_value(value))
}

fn header_list(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let headers =
        (headers.cast::<PyList>()).map_err(|_| PyTypeError::new_err("headers must be a list"))?;
    let mut map = HeaderMap::with_capacity(headers.len());
    for pair in headers.iter() {
        let pair = pair
            .cast_into::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("a header must be a tuple"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(
                "a header must be a (name, value) tuple",
            ));
        }
        let (name, value) = header(&latin1(&pair.get_item(0)?)?, &latin1(&pair.get_item(1)?)?)?;
        map.append(name, value);
    }
    Ok(map)
}

/// A header that can be sent; one that cannot (a name that is not a token, a value with a
/// line break) is refused here, in `start_response`, where the traceback shows the
/// application's line.
fn header(name: &[u8], value: &[u8]) -> PyResult<(HeaderName, HeaderValue)> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    let name = HeaderName::from_bytes(name)
        .map_err(|_| PyValueError::new_err(format!("invalid header name {:?}", shown())))?;
    let value = HeaderValue::from_bytes(value)
        .map_err(|_| PyValueError::new_err(format!("invalid value for header {:?}", shown())))?;
    Ok((name, value))
}

/// The code of a status line: three digits from 200 to 599 (an interim 1xx cannot be the
/// answer), then nothing, or a space and a reason phrase without control characters.
fn status_code(status: &[u8]) -> PyResult<StatusCode> {
    let (digits, rest) = status.split_at(status.len().min(3));
    let reason_ok = match rest.split_first() {
        None => true,
        Some((&first, reason)) => {
            first == b' ' && reason.iter().all(|&b| b == b'\t' || !b.is_ascii_control())
        }
    };
    let code = StatusCode::from_bytes(digits).ok();
    match code.filter(|code| reason_ok && (200..600).contains(&code.as_u16())) {
        Some(code) => Ok(code),
        None => Err(PyValueError::new_err(format!(
            "invalid status {:?}",
            String::from_utf8_lossy(status)
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let table: [(&[u8], Option<u16>); 14] = [
            (b"200 OK", Some(200)),
            (b"404 Not Found", Some(404)),
            (b"200 Okay \xe9t\xe9\tthen", Some(200)),
            (b"599 Weird", Some(599)),
            (b"204", Some(204)),
            (b"302 FOUND", Some(302)),
            (b"1234 Big", None),
            (b"100 Continue", None),
            (b"101 Switching Protocols", None),
            (b"600 Beyond", None),
            (b"099 Low", None),
            (b"200 OK\r\nX-Injected: 1", None),
            (b"200-OK", None),
            (b"20", None),
        ];
        for (line, expected) in table {
            let code = status_code(line).ok().map(|c| c.as_u16());
            assert_eq!(code, expected, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
