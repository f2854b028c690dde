//! A response body from a Python iterable: a list is taken at once; any other iterable is
//! pulled chunk by chunk as the worker writes (the GIL held for each pull, not while writing),
//! and its `close()` is called when the response ends, however it ends.

use std::io;

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use super::start_response::StartResponse;
use super::{attach, traceback};

/// The rest of a streamed body.
pub struct PyChunks {
    /// What the application returned (for `close()`).
    result: Py<PyAny>,
    /// Its iterator.
    iter: Py<PyIterator>,
    /// `start_response`, for what `write()` adds between chunks.
    start: Py<StartResponse>,
    /// The first chunk, pulled before the headers were final.
    first: Option<Bytes>,
}

/// The body: `Ok(Err(bytes))` when it is all known, `Ok(Ok(chunks))` to stream.
pub fn body(
    result: &Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<Result<PyChunks, Bytes>> {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return collect(result, start).map(Err);
    }
    let iter = result.try_iter()?;
    let mut first = start.borrow_mut().take_written();
    for chunk in iter.clone() {
        let chunk = chunk?;
        let chunk = as_bytes(&chunk)?;
        if !chunk.is_empty() {
            start.borrow_mut().body_started()?;
            first.extend_from_slice(chunk);
            let chunks = PyChunks {
                result: result.clone().unbind(),
                iter: iter.unbind(),
                start: start.clone().unbind(),
                first: Some(Bytes::from(first)),
            };
            return Ok(Ok(chunks));
        }
    }
    close(result)?;
    Ok(Err(Bytes::from(first)))
}

/// All chunks of a list or tuple, after what `write()` produced.
fn collect(result: &Bound<'_, PyAny>, start: &Bound<'_, StartResponse>) -> PyResult<Bytes> {
    let mut body = start.borrow_mut().take_written();
    if body.is_empty() && result.len()? == 1 {
        let only = result.get_item(0)?;
        let only = as_bytes(&only)?;
        if !only.is_empty() {
            start.borrow_mut().body_started()?;
        }
        return Ok(Bytes::copy_from_slice(only));
    }
    for chunk in result.try_iter()? {
        let chunk = chunk?;
        let chunk = as_bytes(&chunk)?;
        if !chunk.is_empty() {
            start.borrow_mut().body_started()?;
        }
        body.extend_from_slice(chunk);
    }
    Ok(Bytes::from(body))
}

fn as_bytes<'a>(chunk: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    let bytes = chunk
        .cast::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("a WSGI body must be an iterable of bytes"))?;
    Ok(bytes.as_bytes())
}

/// Calls the result's `close()`, if it has one (PEP 3333: always, even after an error).
pub fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    match result.getattr_opt(intern!(result.py(), "close"))? {
        Some(close) => close.call0().map(drop),
        None => Ok(()),
    }
}

impl PyChunks {
    fn pull(&mut self, py: Python<'_>) -> PyResult<Option<Bytes>> {
        let written = self.start.bind(py).borrow_mut().take_written();
        if !written.is_empty() {
            return Ok(Some(Bytes::from(written)));
        }
        loop {
            let Some(chunk) = self.iter.bind(py).clone().next() else {
                return Ok(None);
            };
            let chunk = chunk?;
            let chunk = as_bytes(&chunk)?;
            if !chunk.is_empty() {
                return Ok(Some(Bytes::copy_from_slice(chunk)));
            }
        }
    }
}

impl Iterator for PyChunks {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        attach(|py| match self.pull(py) {
            Ok(chunk) => chunk.map(Ok),
            Err(err) => {
                log::error!("a WSGI body failed:\n{}", traceback(py, &err));
                Some(Err(io::Error::other("the application's body failed")))
            }
        })
    }
}

impl Drop for PyChunks {
    fn drop(&mut self) {
        attach(|py| {
            if let Err(err) = close(self.result.bind(py)) {
                log::error!("a WSGI body's close() failed:\n{}", traceback(py, &err));
            }
        });
    }
}
