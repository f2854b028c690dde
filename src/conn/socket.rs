//! A client socket as a worker drives it: non-blocking, with every wait bounded by a
//! [`Budget`] (`poll` on the one socket), so that no read or write waits longer than the
//! client's budget allows and the fast path costs one system call.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{recv, RecvFlags};

use super::budget::Budget;
use super::outbox::{sendfile_now, write_now, Unsent};
use super::tls::{Encrypted, TlsSession};
use crate::tls::TlsInfo;

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

/// The most response bytes held back for one write while pipelined requests are served.
const BATCH_LIMIT: usize = 64 * 1024;

/// Whether bytes wait unread on `stream` (blocking or not; it does not wait).
pub(crate) fn has_input(stream: &TcpStream) -> bool {
    let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
    matches!(recv(stream, &mut [0u8; 1], flags), Ok((1, _)))
}

/// Whether the send buffer of `stream` has room (it does not wait).
pub(crate) fn has_room(stream: &TcpStream) -> bool {
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    poll(&mut fds, Some(&Timespec::default())).is_ok_and(|ready| ready > 0)
}

/// Makes dropping `stream` reset the connection (`SO_LINGER` 0), discarding what the client
/// has not received: for a response cut short, which must not keep trickling out.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// The client connection as a worker drives it.
pub(crate) struct Socket {
    /// The connection, in non-blocking mode.
    stream: TcpStream,
    /// The last read returned less than it could take, so the receive queue was empty then.
    /// The idle set reports only *new* input (edge-triggered): a connection parked while
    /// bytes wait unread would never be reported, so after a full read it is checked first.
    drained: bool,
    /// What the client may still make the current response wait (writes).
    writes: Budget,
    /// Response bytes the socket did not take yet, to be sent when it has room (see
    /// [`super::outbox`]).
    queue: Unsent,
    /// Whether small responses are held back in `held`: more pipelined requests are at hand,
    /// and their responses leave together in one write.
    holding: bool,
    /// Response bytes held back while `holding`, sent before anything else is.
    held: Vec<u8>,
    /// The TLS session, on a TLS interface: every byte read and written goes through it.
    tls: Option<Box<TlsSession>>,
}

impl Socket {
    /// Wraps a stream (with its TLS session, on a TLS interface), switching it to
    /// non-blocking mode unless `nonblocking` says it is; each response may wait
    /// `write_budget` on a client that does not read.
    pub(crate) fn new(
        stream: TcpStream,
        tls: Option<Box<TlsSession>>,
        write_budget: Duration,
        nonblocking: bool,
    ) -> io::Result<Self> {
        if !nonblocking {
            stream.set_nonblocking(true)?;
        }
        Ok(Socket {
            stream,
            drained: false,
            writes: Budget::renewable(write_budget),
            queue: Unsent::default(),
            holding: false,
            held: Vec::new(),
            tls,
        })
    }

    /// Gives the (non-blocking) stream and its TLS session back, e.g. to park them; nothing
    /// may be held back (see [`Socket::release`]).
    pub(crate) fn into_inner(self) -> (TcpStream, Option<Box<TlsSession>>) {
        debug_assert!(self.held.is_empty(), "held response bytes dropped");
        (self.stream, self.tls)
    }

    /// The TLS session, on a TLS interface.
    pub(crate) fn tls(&self) -> Option<&TlsSession> {
        self.tls.as_deref()
    }

    /// What the environ says of the TLS session, on a TLS interface once the handshake is
    /// done.
    pub(crate) fn tls_info(&mut self) -> Option<Arc<TlsInfo>> {
        self.tls.as_mut().and_then(|tls| tls.info())
    }

    /// Appends what is available to `buf` without waiting (`WouldBlock` if nothing is);
    /// `Ok(0)` means the peer closed.
    pub(crate) fn fill_ready(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = self.read_now(scratch)?;
            buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// As [`Socket::fill_ready`], but as the bytes came, even on a TLS interface: for the
    /// PROXY header, which precedes the TLS session.
    pub(crate) fn fill_plain(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = self.read_plain(scratch)?;
            buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// On a TLS interface, gives the session what [`Socket::fill_plain`] read into `buf`
    /// past the PROXY header (its first records), leaving `buf` empty; from there on, reads
    /// go through the session. On a plain one, `buf` is left as it is.
    pub(crate) fn start_tls(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => tls.receive_read(&self.stream, &buf.split()),
            None => Ok(()),
        }
    }

    /// Sends `data` bypassing the TLS session, if the socket takes it now: the answer to a
    /// client that spoke plain HTTP to a TLS port (a short one, which a new connection's
    /// send buffer always has room for).
    pub(crate) fn send_in_clear(&mut self, data: &[u8]) {
        let _ = (&self.stream).write_all(data);
    }

    /// Appends what arrives within `budget` to `buf`; `Ok(0)` means the peer closed.
    pub(crate) fn fill(&mut self, buf: &mut BytesMut, budget: &mut Budget) -> io::Result<usize> {
        SCRATCH.with_borrow_mut(|scratch| {
            let n = self.read_within(scratch, budget)?;
            buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// Reads straight into `out`, waiting within `budget`; past it the error is `TimedOut`.
    /// Responses held back are sent before waiting: the client may be waiting for them.
    pub(crate) fn read_within(&mut self, out: &mut [u8], budget: &mut Budget) -> io::Result<usize> {
        loop {
            match self.read_now(out) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_held()?;
                    wait(&self.stream, PollFlags::IN, budget)?
                }
                Ok(n) => {
                    budget.moved(n);
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read that does not wait.
    fn read_now(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(tls) = &mut self.tls {
            return match tls.read(&self.stream, out) {
                Ok((n, drained)) => {
                    self.drained = drained;
                    Ok(n)
                }
                Err(e) => {
                    self.drained = true;
                    Err(e)
                }
            };
        }
        self.read_plain(out)
    }

    /// One read of the bytes as they came (ciphertext on a TLS interface) that does not wait.
    fn read_plain(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Err(e);
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

    /// Whether unread input waits now (it may have arrived after the last read): closing
    /// then would make the kernel reset the connection.
    pub(crate) fn has_input(&self) -> bool {
        !self.drained || has_input(&self.stream)
    }

    /// Starts a response: it gets a full write budget.
    pub(crate) fn start_response(&mut self) {
        self.writes.refill();
    }

    /// Holds small responses back from now on (`true`: more requests are at hand), or sends
    /// them as they come (`false`; what is held stays held until [`Socket::release`]).
    pub(crate) fn hold(&mut self, holding: bool) {
        self.holding = holding;
    }

    /// Sends what is held back without waiting; the rest is queued. With `more`, the kernel
    /// is told that more follows at once.
    pub(crate) fn release(&mut self, more: bool) -> io::Result<()> {
        self.send_held(|socket, held| socket.send_or_queue_now(held, more))
    }

    /// Sends what is held back, waiting within the response's budget (before a blocking
    /// write or read).
    fn write_held(&mut self) -> io::Result<()> {
        self.send_held(Socket::write_unheld)
    }

    /// Sends what is held back with `send`, keeping the buffer (emptied) for the next batch.
    fn send_held(
        &mut self,
        send: impl FnOnce(&mut Self, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut held = std::mem::take(&mut self.held);
        let sent = send(self, &held);
        held.clear();
        self.held = held;
        sent
    }

    /// Sends what the socket takes of `data` now; the rest (copied) is queued. With `more`,
    /// the kernel is told that more follows at once. While holding, small data is held back
    /// instead (a full batch is sent first); data that follows held data leaves with it, in
    /// one write.
    pub(crate) fn send_or_queue(&mut self, data: &[u8], more: bool) -> io::Result<()> {
        if self.held.len() + data.len() > BATCH_LIMIT {
            self.release(more)?;
        }
        let fits = self.held.len() + data.len() <= BATCH_LIMIT;
        if fits && self.queue.is_empty() && (self.holding || !self.held.is_empty()) {
            self.held.extend_from_slice(data);
            return match self.holding {
                true => Ok(()),
                false => self.release(more),
            };
        }
        self.release(more)?;
        self.send_or_queue_now(data, more)
    }

    fn send_or_queue_now(&mut self, data: &[u8], more: bool) -> io::Result<()> {
        let sent = match self.queued() {
            false => self.write_now(data, more)?,
            true => 0,
        };
        if sent < data.len() {
            self.queue.push_bytes(Bytes::copy_from_slice(&data[sent..]));
        }
        Ok(())
    }

    /// Sends what the socket takes of `data` now; the rest is queued (without a copy).
    pub(crate) fn send_or_queue_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.release(false)?;
        let sent = match self.queued() {
            false => self.write_now(&data, false)?,
            true => 0,
        };
        if sent < data.len() {
            self.queue.push_bytes(data.slice(sent..));
        }
        Ok(())
    }

    /// Sends what the socket takes of `len` bytes of `file` now (`sendfile`); the rest is
    /// queued.
    pub(crate) fn send_or_queue_file(&mut self, mut file: File, len: u64) -> io::Result<()> {
        self.release(true)?;
        let sent = match (self.queued(), &mut self.tls) {
            (true, _) => 0,
            (false, None) => sendfile_now(&self.stream, &file, len)?,
            (false, Some(tls)) => tls.send_file(&self.stream, &mut file, len)?,
        };
        if sent < len {
            self.queue.push_file(file, len - sent);
        }
        Ok(())
    }

    /// Writes what the socket (or the TLS session) takes of `data` without waiting.
    fn write_now(&mut self, data: &[u8], more: bool) -> io::Result<usize> {
        match &mut self.tls {
            None => write_now(&self.stream, data, more),
            Some(tls) => tls.write_now(&self.stream, data),
        }
    }

    /// Sends queued bytes without waiting (the TLS session's ciphertext first); returns how
    /// many were sent.
    pub(crate) fn flush_queue(&mut self) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.queue.flush(&mut &self.stream);
        };
        if !tls.flush(&self.stream)? {
            return Ok(0);
        }
        let tcp = &self.stream;
        self.queue.flush(&mut Encrypted { tcp, session: tls })
    }

    /// Whether response bytes wait to be sent (queued, or encrypted and not yet taken by the
    /// socket).
    pub(crate) fn queued(&self) -> bool {
        !self.queue.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.pending())
    }

    /// Takes the queued bytes (to wait with the parked connection); nothing may be held back.
    pub(crate) fn take_queue(&mut self) -> Unsent {
        debug_assert!(self.held.is_empty(), "held response bytes dropped");
        std::mem::take(&mut self.queue)
    }

    /// Puts back bytes queued before the connection was parked.
    pub(crate) fn restore_queue(&mut self, queue: Unsent) {
        self.queue = queue;
    }

    /// Writes all of `data` within the response's budget, after what is held back (nothing
    /// may be queued).
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_held()?;
        self.write_unheld(data)
    }

    fn write_unheld(&mut self, mut data: &[u8]) -> io::Result<()> {
        debug_assert!(
            self.queue.is_empty(),
            "bytes queued before a blocking write"
        );
        if self.tls.is_some() {
            return self.write_encrypted(data);
        }
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.writes.moved(n);
                    data = &data[n..];
                }
                Err(e) => self.write_failed(e)?,
            }
        }
        Ok(())
    }

    /// Writes all of `data` through the TLS session within the response's budget, and sends
    /// all of its ciphertext.
    fn write_encrypted(&mut self, mut data: &[u8]) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while !data.is_empty() || tls.pending() {
            let n = tls.write_now(&self.stream, data)?;
            self.writes.moved(n);
            data = &data[n..];
            if tls.pending() && !tls.flush(&self.stream)? {
                wait(&self.stream, PollFlags::OUT, &mut self.writes)?;
            }
        }
        Ok(())
    }

    /// Waits out a full send buffer within the budget; other errors end the write.
    fn write_failed(&mut self, err: io::Error) -> io::Result<()> {
        match err.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::WouldBlock => wait(&self.stream, PollFlags::OUT, &mut self.writes),
            _ => Err(err),
        }
    }

    /// Closes with a reset (see [`reset`]).
    pub(crate) fn abort(self) {
        reset(&self.stream);
    }

    /// Closes after sending what is held back (within the response's budget), and the TLS
    /// session's `close_notify`.
    pub(crate) fn close(mut self) {
        let _ = self.write_held();
        self.end_tls();
    }

    /// Ends the TLS session, if any: `close_notify`, sent if the socket takes it now.
    fn end_tls(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.close(&self.stream);
        }
    }

    /// Closes after an error answer or with unread input: send what is held back, stop
    /// sending, drain briefly, then drop.
    pub(crate) fn close_lingering(mut self) {
        let _ = self.write_held();
        self.end_tls();
        // What arrives now is only drained, read past the TLS session.
        self.tls = None;
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut budget = Budget::total(LINGER_ON_CLOSE);
        let mut drained = 0;
        SCRATCH.with_borrow_mut(|scratch| {
            while drained < LINGER_BYTES {
                match self.read_within(scratch, &mut budget) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        });
    }
}

/// Waits until `stream` is ready for `flags`, charging the wait to `budget`.
fn wait(stream: &TcpStream, flags: PollFlags, budget: &mut Budget) -> io::Result<()> {
    let left = Timespec::try_from(budget.left()?).map_err(io::Error::other)?;
    let since = Instant::now();
    let mut fds = [PollFd::new(stream, flags)];
    let result = poll(&mut fds, Some(&left));
    budget.waited_since(since);
    match result {
        Ok(0) => Err(io::ErrorKind::TimedOut.into()),
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    //! Holding responses back while pipelined requests are served, on a loopback pair.

    use std::io::Read;
    use std::net::TcpStream;

    use super::*;
    use crate::test_support::{loopback, pair};

    /// A socket on the server side of a loopback pair, and the client side.
    fn socket() -> (Socket, TcpStream) {
        let (client, conn) = pair(&loopback());
        let socket = Socket::new(conn.stream, None, Duration::from_secs(5), false).unwrap();
        (socket, client)
    }

    /// What the client can read without waiting.
    fn readable_now(client: &mut TcpStream) -> Vec<u8> {
        client.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = client.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        client.set_nonblocking(false).unwrap();
        got
    }

    /// Reads exactly `len` bytes.
    fn read_exactly(client: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        client.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn held_responses_leave_together_with_the_last_one() {
        let (mut socket, mut client) = socket();
        socket.hold(true);
        socket.send_or_queue(b"one ", false).unwrap();
        socket.send_or_queue(b"two ", false).unwrap();
        assert_eq!(readable_now(&mut client), b"", "held back");
        socket.hold(false);
        socket.send_or_queue(b"three", false).unwrap();
        assert_eq!(read_exactly(&mut client, 13), b"one two three");
        assert!(!socket.queued());
    }

    #[test]
    fn a_blocking_write_or_a_large_body_sends_what_is_held_first() {
        let (mut socket, mut client) = socket();
        socket.hold(true);
        socket.send_or_queue(b"head ", false).unwrap();
        socket.write_all(b"stream ").unwrap();
        socket.send_or_queue(b"held ", false).unwrap();
        socket
            .send_or_queue_bytes(Bytes::from_static(b"body"))
            .unwrap();
        assert_eq!(read_exactly(&mut client, 21), b"head stream held body");
    }

    #[test]
    fn a_batch_past_its_limit_is_sent_and_release_sends_the_rest() {
        let (mut socket, mut client) = socket();
        socket.hold(true);
        let chunk = vec![b'x'; 1000];
        for _ in 0..BATCH_LIMIT / 1000 + 1 {
            socket.send_or_queue(&chunk, false).unwrap();
        }
        let sent = read_exactly(&mut client, BATCH_LIMIT / 1000 * 1000);
        assert!(sent.iter().all(|&b| b == b'x'));
        assert_eq!(readable_now(&mut client), b"", "the last chunk is held");
        socket.release(false).unwrap();
        assert_eq!(read_exactly(&mut client, 1000), chunk);
    }
}
