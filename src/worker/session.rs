//! Serving one connection with blocking I/O: requests in turn, while they keep coming.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use http::StatusCode;

use crate::access_log::{Entry, Request};
use crate::app::{Application, Environ, Input, Reply};
use crate::conn::{file_ended, Budget, Connection, Outbox, Refused, Socket, Ticket};
use crate::http::{
    error_response, parse_head, parse_proxy_header, BodyFraming, ProtocolError, ProxyProtocol,
    RequestHead,
};
use crate::pool::Settings;
use crate::stats::RequestClock;

use super::body::{BodyFault, BodyReader};
use super::origin::origin;
use super::respond::{write_reply, Plan, Sent};

/// The most unread request body discarded to keep a connection open; past it, it closes.
const DISCARD_LIMIT: u64 = 256 * 1024;

/// Request bodies up to this size (with a Content-Length, and not waiting for
/// `100 Continue`) are received in full before a worker runs the application, like heads:
/// a client that sends them slowly waits in the idle set, holding no worker. Larger bodies
/// are read by the application as they arrive.
pub(crate) const PREBUFFER_BODY: u64 = 16 * 1024;

/// How a connection left the worker.
pub(crate) enum Outcome {
    /// Closed (by either side, or after an error); the ticket is to be forgotten.
    Closed(Option<Ticket>),
    /// Open with nothing to read: to be parked in the idle set until the next request.
    Idle(Connection),
}

/// What happens after a request.
enum After {
    /// Read the next request.
    KeepAlive,
    /// Close: the response said so, or it was cut short.
    Close,
    /// Answer with this error, then close.
    Reject(ProtocolError),
    /// The response could not be written (in time): reset the connection.
    Abort,
    /// The rest of the response waits for room in the send buffer; the flag says whether the
    /// connection serves another request then.
    Sending(bool),
}

/// Why no head was read.
enum NoHead {
    /// The readiness report was spurious: nothing to read after all.
    NotReady,
    /// Part of a request (head, or small body) is buffered and nothing more has arrived yet:
    /// wait in the idle set.
    Partial,
    /// The client closed (possibly mid-head).
    Closed,
    /// The head is invalid, or did not arrive in time.
    Invalid(ProtocolError),
}

/// Whether another request is at hand.
enum Awaited {
    /// Bytes of a request are buffered, or the socket was reported readable.
    Ready,
    /// Nothing buffered: park the connection (while the pool drains too: the next request
    /// may be on its way, and the Monitor closes the connection if it stays silent).
    Idle,
}

/// A worker's buffers, lent to each connection it serves so that serving allocates nothing
/// for them, and its request clock.
pub(crate) struct Buffers {
    /// Where bytes read from a client land.
    read: BytesMut,
    /// Where response heads are built.
    out: Vec<u8>,
    /// Runs while a request is served, so that `Status` can tell a stuck application.
    clock: RequestClock,
}

impl Buffers {
    /// Empty buffers, and the worker's clock.
    pub(crate) fn new(clock: RequestClock) -> Self {
        Buffers {
            read: BytesMut::new(),
            out: Vec::new(),
            clock,
        }
    }
}

/// How serving a connection ends.
enum End {
    /// Nothing more to read: park it.
    Idle,
    /// Close it.
    Close,
    /// Answer with this error, then close.
    Reject(ProtocolError),
    /// Reset the connection: a response was cut short.
    Abort,
    /// Park it until the rest of the response can be sent.
    Sending(Box<Outbox>),
}

/// One connection being served.
struct Session<'s> {
    /// The client socket.
    socket: Socket,
    /// Bytes read but not yet parsed.
    buf: BytesMut,
    /// The client's address.
    peer: SocketAddr,
    /// The address the connection arrived on.
    local: SocketAddr,
    /// The pool's shared settings.
    settings: &'s Settings,
    /// The worker's buffers (its read buffer is in `buf` while this connection uses it).
    bufs: &'s mut Buffers,
    /// The socket was reported readable and nothing has been read since.
    readable: bool,
    /// The connection's place in the idle set.
    ticket: Option<Ticket>,
    /// When the request being received must be complete: set when it is first parked
    /// incomplete.
    request_deadline: Option<Instant>,
    /// The request's head, parsed while its small body is still arriving.
    head: Option<RequestHead>,
    /// The rest of a response that waited for room in the send buffer.
    outbox: Option<Box<Outbox>>,
    /// The PROXY header still due before the first request.
    proxy: Option<ProxyProtocol>,
    /// The client used TLS to reach the proxy in front (its PROXY header said so).
    tls: bool,
}

/// Serves `conn` until it closes or goes idle.
pub(crate) fn serve(conn: Connection, settings: &Settings, bufs: &mut Buffers) -> Outcome {
    let Connection {
        stream,
        peer,
        local,
        buffered,
        ticket,
        nonblocking,
        request_deadline,
        head,
        outbox,
        proxy,
        tls,
        tls_session,
    } = conn;
    let socket = match Socket::new(stream, tls_session, settings.read_timeout, nonblocking) {
        Ok(socket) => socket,
        Err(e) => {
            log::debug!("{peer}: cannot configure socket: {e}");
            return Outcome::Closed(ticket);
        }
    };
    let mut buf = std::mem::take(&mut bufs.read);
    buf.extend_from_slice(&buffered);
    let session = Session {
        socket,
        buf,
        peer,
        local,
        settings,
        bufs,
        readable: true,
        ticket,
        request_deadline,
        head: head.map(|head| *head),
        outbox,
        proxy,
        tls,
    };
    session.run()
}

impl Session<'_> {
    fn run(mut self) -> Outcome {
        let end = match self.outbox.take() {
            Some(outbox) => self.resume_sending(outbox),
            None => self.serve_requests(),
        };
        let end = match end {
            End::Idle => self.release_held(),
            other => other,
        };
        let mut unread = std::mem::take(&mut self.buf);
        let partial = match end {
            End::Idle | End::Sending(_) => BytesMut::from(&unread[..]),
            _ => BytesMut::new(),
        };
        let left_unread = !unread.is_empty();
        unread.clear();
        self.bufs.read = unread;
        match end {
            End::Idle => self.into_idle(partial, None),
            End::Sending(outbox) => self.into_idle(partial, Some(outbox)),
            End::Close => self.close(left_unread),
            End::Reject(e) => self.reject(&e),
            End::Abort => {
                log::debug!("{}: response not delivered; resetting", self.peer);
                self.socket.abort();
                Outcome::Closed(self.ticket)
            }
        }
    }

    /// Sends the responses held back before the connection is parked; what the socket does
    /// not take waits in an outbox.
    fn release_held(&mut self) -> End {
        match self.socket.release(false) {
            Err(_) => End::Abort,
            Ok(()) if self.socket.queued() => {
                let budget = self.settings.read_timeout;
                End::Sending(Box::new(Outbox::new(true, budget)))
            }
            Ok(()) => End::Idle,
        }
    }

    /// Closes; if the client sent more than was read (pipelined requests after a
    /// `Connection: close`), drains first so that the kernel does not reset the connection
    /// and destroy the response the client has not read yet.
    fn close(self, left_unread: bool) -> Outcome {
        let ticket = self.ticket;
        match left_unread || self.socket.has_input() {
            true => self.socket.close_lingering(),
            false => self.socket.close(),
        }
        Outcome::Closed(ticket)
    }

    /// Sends more of a response that waited for room; once it is all sent, serving goes on
    /// (or the connection closes, as the response said).
    fn resume_sending(&mut self, mut outbox: Box<Outbox>) -> End {
        self.socket
            .restore_queue(std::mem::take(&mut outbox.unsent));
        match self.socket.flush_queue() {
            Ok(sent) => outbox.sent(sent, self.settings.read_timeout),
            Err(e) if self.file_ended(&e) => return End::Close,
            Err(_) => return End::Abort,
        }
        match (self.socket.queued(), outbox.keep_alive) {
            (true, _) if outbox.overdue() => End::Abort,
            (true, _) => End::Sending(outbox),
            (false, true) => self.serve_requests(),
            (false, false) => End::Close,
        }
    }

    /// Whether a response failed because its file was shorter than promised: all of the file
    /// was sent, so the connection closes cleanly (anything else resets it).
    fn file_ended(&self, err: &std::io::Error) -> bool {
        let ended = file_ended(err);
        if ended {
            log::debug!("{}: the response's file ended early; closing", self.peer);
        }
        ended
    }

    fn serve_requests(&mut self) -> End {
        loop {
            match self.await_request() {
                Awaited::Ready => {}
                Awaited::Idle => return End::Idle,
            }
            let after = match self.receive_request() {
                Ok(head) => self.timed(head),
                Err(NoHead::NotReady | NoHead::Partial) => return End::Idle,
                Err(NoHead::Closed) => After::Close,
                Err(NoHead::Invalid(e)) => self.refuse_head(e),
            };
            match after {
                After::KeepAlive => {}
                After::Close => return End::Close,
                After::Reject(e) => return End::Reject(e),
                After::Abort => return End::Abort,
                After::Sending(keep_alive) => {
                    let budget = self.settings.read_timeout;
                    return End::Sending(Box::new(Outbox::new(keep_alive, budget)));
                }
            }
        }
    }

    fn await_request(&mut self) -> Awaited {
        match !self.buf.is_empty() || self.readable || !self.socket.drained() {
            true => Awaited::Ready,
            false => Awaited::Idle,
        }
    }

    /// Receives a head (and a small body) from what is buffered and what the socket has,
    /// without waiting: a request that is not complete yet waits in the idle set
    /// (`Partial`), so a slow client holds no worker. It must be complete within
    /// `read_timeout` of its first park.
    fn receive_request(&mut self) -> Result<RequestHead, NoHead> {
        loop {
            if let Some(head) = self.parse_buffered()? {
                self.request_deadline = None;
                return Ok(head);
            }
            if !std::mem::take(&mut self.readable) && self.socket.drained() {
                return Err(self.incomplete());
            }
            let filled = match self.proxy {
                Some(_) => self.socket.fill_plain(&mut self.buf),
                None => self.socket.fill_ready(&mut self.buf),
            };
            match filled {
                Ok(0) => return Err(NoHead::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(self.incomplete()),
                Err(e) => return Err(self.failed(&e)),
            }
        }
    }

    /// The request the buffer holds, if it is complete (after the PROXY header, if one is
    /// due).
    fn parse_buffered(&mut self) -> Result<Option<RequestHead>, NoHead> {
        if !self.take_proxy_header()? {
            return Ok(None);
        }
        if self.head.is_none() {
            let parsed = parse_head(&mut self.buf, &self.settings.limits);
            self.head = parsed.map_err(NoHead::Invalid)?;
        }
        let (buffered, max_body) = (self.buf.len() as u64, self.settings.max_body);
        Ok((self.head).take_if(|head| body_at_hand(head, buffered, max_body)))
    }

    /// Reads the PROXY header the connection must begin with, if it is still due: `false`
    /// while it is incomplete. A missing or malformed one closes the connection unanswered.
    fn take_proxy_header(&mut self) -> Result<bool, NoHead> {
        let Some(version) = self.proxy else {
            return Ok(true);
        };
        let header = match parse_proxy_header(&self.buf, version) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(false),
            Err(e) => {
                log::debug!("{}: {e}; closing", self.peer);
                return Err(NoHead::Closed);
            }
        };
        bytes::Buf::advance(&mut self.buf, header.len);
        if let Some((client, local)) = header.addresses {
            log::debug!("{}: PROXY header: client {client}, to {local}", self.peer);
            (self.peer, self.local) = (client, local);
        }
        (self.proxy, self.tls) = (None, header.tls);
        match self.socket.start_tls(&mut self.buf) {
            Ok(()) => Ok(true),
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// Closes a connection whose socket or TLS session failed: a client that spoke plain
    /// HTTP to a TLS port is answered first, in the clear, and its request logged.
    fn failed(&mut self, e: &std::io::Error) -> NoHead {
        match e.get_ref().and_then(|e| e.downcast_ref::<Refused>()) {
            Some(Refused::PlainHttp(seen)) => {
                let err = ProtocolError::PlainHttpOnTls;
                log::debug!("{}: {err}", self.peer);
                let answer = error_response(&err, &self.settings.server_name);
                self.socket.send_in_clear(&answer);
                (self.settings.access_log).refused(self.peer.ip(), Request::Refused(seen), &err);
            }
            Some(refused) => log::debug!("{}: {refused}; closing", self.peer),
            None => {}
        }
        NoHead::Closed
    }

    /// Nothing more to read for now: wait for input, unless a partial head ran out of time
    /// (a partial PROXY header then closes the connection unanswered).
    fn incomplete(&mut self) -> NoHead {
        let handshaking = self.socket.tls().is_some_and(|tls| tls.is_handshaking());
        if self.buf.is_empty() && self.head.is_none() && !handshaking {
            return NoHead::NotReady;
        }
        let now = Instant::now();
        let budget = self.settings.read_timeout;
        let late = *self.request_deadline.get_or_insert(now + budget) <= now;
        match (late, self.proxy.is_some(), handshaking) {
            (false, _, _) => NoHead::Partial,
            (true, false, false) => NoHead::Invalid(ProtocolError::RequestTimeout),
            (true, true, _) => {
                log::debug!("{}: PROXY header not complete in time; closing", self.peer);
                NoHead::Closed
            }
            (true, false, true) => {
                log::debug!("{}: TLS handshake not complete in time; closing", self.peer);
                NoHead::Closed
            }
        }
    }

    /// Records a request whose head was refused (or did not arrive in time), with what is
    /// known of it, and has it answered.
    fn refuse_head(&mut self, err: ProtocolError) -> After {
        let request = match &self.head {
            Some(head) => Request::Head(head),
            None => Request::Refused(&self.buf),
        };
        self.refuse(self.peer.ip(), request, err)
    }

    /// Records a refused request from `remote` and has it answered.
    fn refuse(&self, remote: IpAddr, request: Request<'_>, err: ProtocolError) -> After {
        (self.settings.access_log).refused(remote, request, &err);
        After::Reject(err)
    }

    /// Serves a request with the worker's request clock running.
    fn timed(&mut self, head: RequestHead) -> After {
        self.bufs.clock.start();
        let after = self.serve_request(head);
        self.bufs.clock.stop();
        after
    }

    fn serve_request(&mut self, mut head: RequestHead) -> After {
        self.socket.start_response();
        let wants_keep_alive = head.keep_alive();
        let trusted = self.settings.forwarded.as_ref();
        let tls = self.tls || self.socket.tls().is_some();
        let origin = origin(&mut head, self.peer, tls, trusted);
        let environ = Environ::new(head, self.local, origin.client, origin.scheme);
        let environ = (environ.with_forwarded_host(origin.host)).with_tls(self.socket.tls_info());
        let (reply, body_clean) = match self.run_app(&environ) {
            Ok(done) => done,
            Err(After::Reject(e)) => {
                let remote = environ.remote_addr().ip();
                return self.refuse(remote, Request::Head(environ.head()), e);
            }
            Err(fault) => return fault,
        };
        let draining = self.settings.draining.load(Ordering::Relaxed);
        let plan = Plan {
            version: environ.head().version(),
            is_head: environ.head().is_head_method(),
            keep_alive: wants_keep_alive && body_clean && !draining,
            server: &self.settings.server_name,
        };
        let sent = match self.send_reply(reply, &plan) {
            Ok(sent) => sent,
            Err(e) if self.file_ended(&e) => return After::Close,
            Err(_) => return After::Abort,
        };
        self.settings.access_log.record(&Entry {
            remote: environ.remote_addr().ip(),
            request: Request::Head(environ.head()),
            status: sent.status.as_u16(),
            bytes: sent.body_bytes,
        });
        self.after_sent(&sent)
    }

    /// Writes the response (a panic in its body is an error); requests already read after
    /// this one make it wait to leave with theirs.
    fn send_reply(&mut self, reply: Reply, plan: &Plan<'_>) -> std::io::Result<Sent> {
        self.socket.hold(!self.buf.is_empty());
        let (socket, out) = (&mut self.socket, &mut self.bufs.out);
        let sent = catch_unwind(AssertUnwindSafe(|| write_reply(socket, out, reply, plan)))
            .unwrap_or_else(|_| {
                log::warn!("a response body panicked while sent or dropped; resetting");
                Err(std::io::Error::other("response body panicked"))
            });
        self.settings.count_response();
        sent
    }

    /// What follows a sent response: the held batch goes out unless more of it follows, and
    /// the connection waits to send the rest, serves the next request, or closes.
    fn after_sent(&mut self, sent: &Sent) -> After {
        let batch_goes_on = sent.keep_alive && !self.buf.is_empty();
        if !batch_goes_on && self.socket.release(false).is_err() {
            return After::Abort;
        }
        match (self.socket.queued(), sent.keep_alive) {
            (true, keep_alive) => After::Sending(keep_alive),
            (false, true) => After::KeepAlive,
            (false, false) => After::Close,
        }
    }

    /// Calls the application; the flag tells whether the connection is fit for another request.
    fn run_app(&mut self, environ: &Environ) -> Result<(Reply, bool), After> {
        let head = environ.head();
        let max_body = self.settings.max_body;
        if matches!(head.framing(), BodyFraming::Length(n) if n > max_body) {
            return Err(After::Reject(ProtocolError::PayloadTooLarge));
        }
        let mut body = BodyReader::new(
            &mut self.buf,
            &mut self.socket,
            head.framing(),
            head.expects_continue(),
            Budget::renewable(self.settings.read_timeout),
        )
        .with_limit(max_body);
        let reply = call_app(&*self.settings.app, environ, &mut body);
        match body.fault() {
            Some(BodyFault::Protocol(e)) => return Err(After::Reject(e.clone())),
            Some(BodyFault::Broken) => return Err(After::Close),
            None => {}
        }
        let clean = body.discard_rest(DISCARD_LIMIT);
        match reply {
            Some(reply) => Ok((reply, clean)),
            None => Ok((internal_error(), false)),
        }
    }

    fn reject(mut self, err: &ProtocolError) -> Outcome {
        let ticket = self.ticket;
        log::debug!("{}: rejected request: {err}", self.peer);
        let response = error_response(err, &self.settings.server_name);
        self.socket.start_response();
        if self.socket.write_all(&response).is_ok() {
            self.settings.count_response();
            self.socket.close_lingering();
        }
        Outcome::Closed(ticket)
    }

    /// Parks the connection, with the partial request received so far and the rest of a
    /// response waiting to be sent (if any).
    fn into_idle(mut self, partial: BytesMut, outbox: Option<Box<Outbox>>) -> Outcome {
        let outbox = outbox.map(|mut outbox| {
            outbox.unsent = self.socket.take_queue();
            outbox
        });
        let (stream, tls_session) = self.socket.into_inner();
        Outcome::Idle(Connection {
            stream,
            tls_session,
            peer: self.peer,
            local: self.local,
            buffered: partial,
            ticket: self.ticket,
            nonblocking: true,
            request_deadline: self.request_deadline,
            head: self.head.map(Box::new),
            outbox,
            proxy: self.proxy,
            tls: self.tls,
        })
    }
}

/// Whether the request may be served now: its body is small and all here, or it will be
/// read as it arrives, or it is refused for its size anyway.
fn body_at_hand(head: &RequestHead, buffered: u64, max_body: u64) -> bool {
    let waits = |n| n <= PREBUFFER_BODY.min(max_body) && !head.expects_continue();
    match head.framing() {
        BodyFraming::Length(n) if waits(n) => buffered >= n,
        _ => true,
    }
}

/// Runs the application, turning a panic into `None`.
fn call_app(app: &dyn Application, environ: &Environ, body: &mut BodyReader<'_>) -> Option<Reply> {
    let mut input = Input::new(body);
    match catch_unwind(AssertUnwindSafe(|| app.call(environ, &mut input))) {
        Ok(reply) => Some(reply),
        Err(_) => {
            log::warn!(
                "application panicked on {} {}",
                environ.method(),
                environ.head().target()
            );
            None
        }
    }
}

fn internal_error() -> Reply {
    Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
}
