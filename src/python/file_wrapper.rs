//! `wsgi.file_wrapper` (PEP 3333): an iterable over a file-like object. When the application
//! returns one that wraps a real file, the server sends the file with the kernel's zero-copy
//! path (`sendfile`) from a descriptor of its own, instead of iterating.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::intern;
use pyo3::prelude::*;

/// `environ["wsgi.file_wrapper"]`.
#[pyclass(module = "skyrocket")]
pub struct FileWrapper {
    /// The file-like object: anything with `read(size)`; `fileno()` and `tell()` make it a
    /// candidate for `sendfile`, and its `close()` is called when the response ends.
    filelike: Py<PyAny>,
    /// How many bytes one step of iteration reads, when the file is iterated.
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper { filelike, blksize }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next block, or the end of iteration at the end of the file.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = (self.filelike.bind(py)).call_method1(intern!(py, "read"), (self.blksize,))?;
        Ok((!block.is_empty()?).then_some(block))
    }

    /// Closes the file-like object, if it can be closed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        super::call_close(self.filelike.bind(py))
    }
}

impl FileWrapper {
    /// A descriptor of our own on the wrapped file, positioned where the file-like object is,
    /// and the bytes left from there; `None` when it is not a regular file with a descriptor
    /// (a socket, a pipe, an in-memory buffer), which is then iterated instead.
    pub fn real_file(&self, py: Python<'_>) -> Option<(File, u64)> {
        let filelike = self.filelike.bind(py);
        let fd: RawFd = filelike
            .call_method0(intern!(py, "fileno"))
            .ok()?
            .extract()
            .ok()?;
        let position: u64 = filelike
            .call_method0(intern!(py, "tell"))
            .ok()?
            .extract()
            .ok()?;
        if fd < 0 {
            return None;
        }
        // SAFETY: `fileno()` just named an open descriptor that the file-like object owns, and
        // it stays open while we duplicate it: we hold the GIL, so no Python code can close it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut file = File::from(borrowed.try_clone_to_owned().ok()?);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        file.seek(SeekFrom::Start(position)).ok()?;
        Some((file, meta.len().saturating_sub(position)))
    }
}
