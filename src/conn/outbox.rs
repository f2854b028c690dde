//! The rest of a response that did not fit in the send buffer, kept with its connection while
//! it waits in the idle set for room: a client that reads slowly holds no worker.
//!
//! Responses held in memory (a head and a body of bytes) and files wait this way; a stream
//! is sent by its worker (the application produces it), within the write budget.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use rustix::net::{send, SendFlags};

use super::budget::RENEW_BYTES;

/// The most bytes handed to one `sendfile` call.
const SENDFILE_CHUNK: usize = 1 << 20;

/// Response bytes not sent yet, in order: bytes, then possibly the rest of a file.
#[derive(Debug, Default)]
pub(crate) struct Unsent {
    /// Bytes, in order.
    chunks: VecDeque<Bytes>,
    /// A file positioned at its next byte to send, and how many bytes of it are left.
    file: Option<(File, u64)>,
}

impl Unsent {
    /// Whether everything has been sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.file.is_none()
    }

    /// Queues bytes after what is queued.
    pub(crate) fn push_bytes(&mut self, bytes: Bytes) {
        self.chunks.push_back(bytes);
    }

    /// Queues `left` bytes of `file` after what is queued.
    pub(crate) fn push_file(&mut self, file: File, left: u64) {
        self.file = Some((file, left));
    }

    /// Sends what `sink` takes without waiting; returns how many bytes were sent.
    pub(crate) fn flush(&mut self, sink: &mut impl Sink) -> io::Result<usize> {
        let mut total = 0;
        while let Some(mut front) = self.chunks.pop_front() {
            let n = sink.send(&front)?;
            total += n;
            if n < front.len() {
                front.advance(n);
                self.chunks.push_front(front);
                return Ok(total);
            }
        }
        if let Some((file, left)) = &mut self.file {
            let n = sink.send_file(file, *left)?;
            total += n as usize;
            *left -= n;
            if *left == 0 {
                self.file = None;
            }
        }
        Ok(total)
    }
}

/// Where queued response bytes go: the socket itself, or a TLS session over it.
pub(crate) trait Sink {
    /// Sends what can go of `data` now; how many bytes went.
    fn send(&mut self, data: &[u8]) -> io::Result<usize>;

    /// Sends what can go of `left` bytes of `file` (from its position) now; how many went.
    fn send_file(&mut self, file: &mut File, left: u64) -> io::Result<u64>;
}

impl Sink for &TcpStream {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        write_now(self, data, false)
    }

    fn send_file(&mut self, file: &mut File, left: u64) -> io::Result<u64> {
        sendfile_now(self, file, left)
    }
}

/// Writes what the socket takes of `data` without waiting; `more` tells the kernel that more
/// follows at once (`MSG_MORE`: a head and the start of a file leave in one packet).
pub(crate) fn write_now(stream: &TcpStream, data: &[u8], more: bool) -> io::Result<usize> {
    let flags = match more {
        true => SendFlags::NOSIGNAL | SendFlags::MORE,
        false => SendFlags::NOSIGNAL,
    };
    let mut sent = 0;
    while sent < data.len() {
        match send(stream, &data[sent..], flags) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// Sends up to `left` bytes of `file` with `sendfile` without waiting; a file that ends first
/// is an error (the response promised those bytes) that [`file_ended`] recognises.
pub(crate) fn sendfile_now(stream: &TcpStream, file: &File, left: u64) -> io::Result<u64> {
    let mut sent = 0u64;
    while sent < left {
        let chunk = usize::try_from(left - sent).map_or(SENDFILE_CHUNK, |n| n.min(SENDFILE_CHUNK));
        match rustix::fs::sendfile(stream.as_fd(), file.as_fd(), None, chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => sent += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}

/// Whether `err` means that a response's file ended before the bytes it promised: everything
/// before was sent, so the response is cut short, not garbled.
pub(crate) fn file_ended(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof
}

/// Unsent response bytes and what to do once they are sent.
#[derive(Debug)]
pub struct Outbox {
    /// The unsent bytes, in order.
    pub(crate) unsent: Unsent,
    /// Whether the connection serves another request once they are sent.
    pub(crate) keep_alive: bool,
    /// When the client is given up unless it reads: `read_timeout` after the response began
    /// waiting, moved on each time [`RENEW_BYTES`] were sent.
    deadline: Instant,
    /// Bytes sent since the deadline was last set.
    moved: usize,
}

impl Outbox {
    /// The rest of a response (its bytes are filled in when the connection is parked), due
    /// within `budget` unless the client reads.
    pub fn new(keep_alive: bool, budget: Duration) -> Self {
        Outbox {
            unsent: Unsent::default(),
            keep_alive,
            deadline: Instant::now() + budget,
            moved: 0,
        }
    }

    /// Counts `n` more bytes sent; enough of them move the deadline `budget` ahead.
    pub(crate) fn sent(&mut self, n: usize, budget: Duration) {
        self.moved += n;
        if self.moved >= RENEW_BYTES {
            self.moved = 0;
            self.deadline = Instant::now() + budget;
        }
    }

    /// When the client is given up unless it reads.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub(crate) fn overdue(&self) -> bool {
        self.deadline <= Instant::now()
    }
}
