//! A response body from a Python iterable: a list is taken at once; a `wsgi.file_wrapper`
//! around a real file becomes a file the worker sends with `sendfile`; any other iterable is
//! pulled chunk by chunk as the worker writes (the GIL held for each pull, not while writing),
//! and its `close()` is called when the response ends, however it ends.

use std::fs::File;
use std::io;

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use crate::app::Body;

use super::file_wrapper::FileWrapper;
use super::start_response::StartResponse;
use super::{attach, call_close, traceback};

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

/// A response body from Python.
pub enum PyBody {
    /// All of it, known at once (a list or tuple, or an iterable that yielded nothing).
    Whole(Bytes),
    /// The first chunk is known; the rest is pulled as the connection takes it.
    Streamed(PyChunks),
    /// `len` bytes of a real file from its current position (a `wsgi.file_wrapper`), sent
    /// with `sendfile`.
    File {
        /// A descriptor of our own, positioned at the first byte to send.
        file: File,
        /// The bytes left in the file, or the declared `Content-Length` if any.
        len: u64,
    },
}

impl PyBody {
    /// The body to send. A real file's `close()` is called now: the server has its own
    /// descriptor of it. `declared` is the application's `Content-Length`.
    pub fn into_body(self, result: &Bound<'_, PyAny>, declared: Option<u64>) -> PyResult<Body> {
        Ok(match self {
            PyBody::Streamed(chunks) => Body::Stream(Box::new(chunks)),
            PyBody::Whole(bytes) => whole(bytes, declared),
            PyBody::File { file, len } => {
                close(result)?;
                Body::FilePart { file, len }
            }
        })
    }
}

/// A body known at once, sent as the application declared: cut at a declared length that is
/// shorter; with one that is longer, it goes as a stream, which closes the connection after
/// it (the client must not read the next response as the rest of this one).
fn whole(bytes: Bytes, declared: Option<u64>) -> Body {
    match declared {
        Some(len) if len < bytes.len() as u64 => Body::Bytes(bytes.slice(..len as usize)),
        Some(len) if len > bytes.len() as u64 => Body::Stream(Box::new(std::iter::once(Ok(bytes)))),
        _ => Body::Bytes(bytes),
    }
}

/// The body of what the application returned.
pub fn body(result: &Bound<'_, PyAny>, start: &Bound<'_, StartResponse>) -> PyResult<PyBody> {
    if is_sequence(result) {
        return collect(result, start).map(PyBody::Whole);
    }
    if let Some(file) = real_file(result, start)? {
        return Ok(file);
    }
    let iter = result.try_iter()?;
    let mut first = start.borrow_mut().take_written();
    for chunk in iter.clone() {
        let chunk = chunk?;
        let chunk = body_bytes(&chunk, start)?;
        if !chunk.is_empty() {
            first.extend_from_slice(chunk);
            return Ok(PyBody::Streamed(PyChunks {
                result: result.clone().unbind(),
                iter: iter.unbind(),
                start: start.clone().unbind(),
                first: Some(Bytes::from(first)),
            }));
        }
    }
    close(result)?;
    Ok(PyBody::Whole(Bytes::from(first)))
}

/// A `wsgi.file_wrapper` around a real file, with nothing from `write()` to send first.
fn real_file(
    result: &Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<Option<PyBody>> {
    let Ok(wrapper) = result.cast::<FileWrapper>() else {
        return Ok(None);
    };
    if start.borrow().has_written() {
        return Ok(None);
    }
    let Some((file, left)) = wrapper.borrow().real_file(result.py()) else {
        return Ok(None);
    };
    let mut start = start.borrow_mut();
    start.body_started()?;
    let len = start.declared_length().unwrap_or(left);
    Ok(Some(PyBody::File { file, len }))
}

/// All chunks of a list or tuple, after what `write()` produced.
fn collect(result: &Bound<'_, PyAny>, start: &Bound<'_, StartResponse>) -> PyResult<Bytes> {
    let mut body = start.borrow_mut().take_written();
    if body.is_empty() && result.len()? == 1 {
        let only = result.get_item(0)?;
        return Ok(Bytes::copy_from_slice(body_bytes(&only, start)?));
    }
    for chunk in result.try_iter()? {
        body.extend_from_slice(body_bytes(&chunk?, start)?);
    }
    Ok(Bytes::from(body))
}

/// A chunk's bytes; a non-empty one starts the body (the headers are final from then on).
fn body_bytes<'a>(
    chunk: &'a Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<&'a [u8]> {
    let bytes = as_bytes(chunk)?;
    if !bytes.is_empty() {
        start.borrow_mut().body_started()?;
    }
    Ok(bytes)
}

fn as_bytes<'a>(chunk: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    let bytes = chunk
        .cast::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("a WSGI body must be an iterable of bytes"))?;
    Ok(bytes.as_bytes())
}

/// A list or a tuple: taken at once, with no `close()` to call.
fn is_sequence(result: &Bound<'_, PyAny>) -> bool {
    result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>()
}

/// Calls the result's `close()`, if it has one (PEP 3333: always, even after an error).
pub fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    match is_sequence(result) {
        true => Ok(()),
        false => call_close(result),
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
