//! A blocking client socket with deadline-aware reads and cached timeout settings.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustix::net::{recv, RecvFlags};

/// The most bytes taken from the socket by one read into a buffer.
const READ_CHUNK: usize = 8 * 1024;

thread_local! {
    /// Each worker thread's landing space for reads: zeroed once, so reads cost no memset.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// How long a closing connection is drained so that the kernel does not reset it (which could
/// destroy the response the client has not read yet).
const LINGER_ON_CLOSE: Duration = Duration::from_millis(500);

/// The most bytes drained while closing.
const LINGER_BYTES: usize = 64 * 1024;

/// The client connection as a worker drives it.
pub(crate) struct Socket {
    /// The connection, in blocking mode.
    stream: TcpStream,
    /// The receive timeout last set, so that unchanged timeouts cost no system call.
    read_timeout: Option<Duration>,
    /// The last read returned less than it could take, so the receive queue was empty then.
    /// The idle set reports only *new* input (edge-triggered): a connection parked while
    /// bytes wait unread would never be reported, so after a full read it is checked first.
    drained: bool,
}

impl Socket {
    /// Wraps a blocking stream whose reads and writes give up after `timeout`; `configured`
    /// says the socket already has these settings.
    pub(crate) fn new(stream: TcpStream, timeout: Duration, configured: bool) -> io::Result<Self> {
        if !configured {
            stream.set_write_timeout(Some(timeout))?;
            stream.set_read_timeout(Some(timeout))?;
        }
        Ok(Socket {
            stream,
            read_timeout: Some(timeout),
            drained: false,
        })
    }

    /// Gives the stream back with its read timeout set to `timeout` again, e.g. to park it.
    pub(crate) fn into_inner(self, timeout: Duration) -> io::Result<TcpStream> {
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
        }
        Ok(self.stream)
    }

    /// Appends what is available to `buf` without waiting (the socket was reported readable;
    /// `WouldBlock` if the report was spurious); `Ok(0)` means the peer closed.
    pub(crate) fn fill_ready(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|scratch| loop {
            match recv(&self.stream, &mut scratch[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    self.drained = n < scratch.len();
                    buf.extend_from_slice(&scratch[..n]);
                    return Ok(n);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        })
    }

    /// Appends what arrives within `timeout` to `buf`; `Ok(0)` means the peer closed.
    pub(crate) fn fill(&mut self, buf: &mut BytesMut, timeout: Duration) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = self.read_within(scratch, timeout)?;
            buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// Like [`Socket::fill`], but with an absolute deadline; past it the error is `TimedOut`.
    pub(crate) fn fill_by(&mut self, buf: &mut BytesMut, deadline: Instant) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.fill(buf, left)
    }

    /// Reads straight into `out` within `timeout`.
    pub(crate) fn read_within(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        loop {
            match self.stream.read(out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Ok(n) => {
                    self.drained = n < out.len();
                    return Ok(n);
                }
                other => return other,
            }
        }
    }

    /// Whether the last read emptied the receive queue (see [`Socket::drained`]'s field).
    pub(crate) fn drained(&self) -> bool {
        self.drained
    }

    /// Writes all of `data`.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)
    }

    /// Copies `len` bytes of `file` to the client (sendfile where the kernel allows).
    pub(crate) fn send_file(&mut self, file: std::fs::File, len: u64) -> io::Result<u64> {
        io::copy(&mut file.take(len), &mut self.stream)
    }

    /// Closes after an error answer: stop sending, drain briefly, then drop.
    pub(crate) fn close_lingering(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut scratch = [0u8; 4096];
        let deadline = Instant::now() + LINGER_ON_CLOSE;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            match left.is_zero() {
                true => break,
                false => match self.read_within(&mut scratch, left) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                },
            }
        }
    }
}
