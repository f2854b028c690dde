//! Serving one connection with blocking I/O: requests in turn, while they keep coming.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::StatusCode;

use crate::access_log::{self, Entry};
use crate::app::{Application, Environ, Input, Reply};
use crate::dispatcher::Connection;
use crate::http::{error_response, parse_head, ProtocolError, RequestHead};
use crate::stats::Gauge;

use super::body::{BodyFault, BodyReader};
use super::respond::{write_reply, Plan};
use super::socket::Socket;
use super::Settings;

/// How long a worker waits for the next request on a keep-alive connection before it hands the
/// connection to the Monitor. Long enough to cover a busy client's round trip, short enough
/// that an idle connection does not hold a thread.
const LINGER: Duration = Duration::from_millis(5);

/// The most unread request body discarded to keep a connection open; past it, it closes.
const DISCARD_LIMIT: u64 = 256 * 1024;

/// How a connection left the worker.
pub(crate) enum Outcome {
    /// Closed (by either side, or after an error).
    Closed,
    /// Open and idle: the Monitor watches it until the next request.
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
}

/// Whether a request is coming.
enum Awaited {
    /// Bytes of a request are buffered.
    Ready,
    /// Nothing came within the linger time.
    Idle,
    /// The client closed, or the pool is draining.
    Closed,
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
    /// Scratch space for response heads, reused across requests.
    out: Vec<u8>,
}

/// Serves `conn` until it closes or goes idle.
pub(crate) fn serve(conn: Connection, settings: &Settings) -> Outcome {
    let Connection {
        stream,
        peer,
        local,
        buffered,
    } = conn;
    let socket = match Socket::new(stream, settings.read_timeout) {
        Ok(socket) => socket,
        Err(e) => {
            log::debug!("{peer}: cannot configure socket: {e}");
            return Outcome::Closed;
        }
    };
    let session = Session {
        socket,
        buf: buffered,
        peer,
        local,
        settings,
        out: Vec::with_capacity(512),
    };
    session.run()
}

impl Session<'_> {
    fn run(mut self) -> Outcome {
        loop {
            match self.await_request() {
                Awaited::Ready => {}
                Awaited::Idle => return self.into_idle(),
                Awaited::Closed => return Outcome::Closed,
            }
            let after = match self.read_head() {
                Ok(Some(head)) => self.serve_request(head),
                Ok(None) => After::Close,
                Err(e) => After::Reject(e),
            };
            match after {
                After::KeepAlive => {}
                After::Close => return Outcome::Closed,
                After::Reject(e) => return self.reject(&e),
            }
        }
    }

    fn await_request(&mut self) -> Awaited {
        if !self.buf.is_empty() {
            return Awaited::Ready;
        }
        if self.settings.draining.load(Ordering::Relaxed) {
            return Awaited::Closed;
        }
        if self.settings.stats.get(Gauge::Queued) > 0 {
            return Awaited::Idle;
        }
        match self.socket.fill(&mut self.buf, LINGER) {
            Ok(0) => Awaited::Closed,
            Ok(_) => Awaited::Ready,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Awaited::Idle,
            Err(_) => Awaited::Closed,
        }
    }

    /// Reads a head within `read_timeout`; `Ok(None)` when the client closed first.
    fn read_head(&mut self) -> Result<Option<RequestHead>, ProtocolError> {
        let deadline = Instant::now() + self.settings.read_timeout;
        loop {
            if let Some(head) = parse_head(&mut self.buf, &self.settings.limits)? {
                return Ok(Some(head));
            }
            match self.socket.fill_by(&mut self.buf, deadline) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(ProtocolError::RequestTimeout)
                }
                Err(_) => return Ok(None),
            }
        }
    }

    fn serve_request(&mut self, head: RequestHead) -> After {
        let wants_keep_alive = head.keep_alive();
        let environ = Environ::new(head, self.local, self.peer, "http");
        let (reply, body_clean) = match self.run_app(&environ) {
            Ok(done) => done,
            Err(fault) => return fault,
        };
        let draining = self.settings.draining.load(Ordering::Relaxed);
        let plan = Plan {
            version: environ.head().version(),
            is_head: environ.head().is_head_method(),
            keep_alive: wants_keep_alive && body_clean && !draining,
            server: &self.settings.server_name,
        };
        let sent = write_reply(&mut self.socket, &mut self.out, reply, &plan);
        self.settings.stats.request_served();
        let Ok(sent) = sent else {
            return After::Close;
        };
        log_access(&environ, sent.status, sent.body_bytes);
        match sent.keep_alive {
            true => After::KeepAlive,
            false => After::Close,
        }
    }

    /// Calls the application; the flag tells whether the connection is fit for another request.
    fn run_app(&mut self, environ: &Environ) -> Result<(Reply, bool), After> {
        let head = environ.head();
        let mut body = BodyReader::new(
            &mut self.buf,
            &mut self.socket,
            head.framing(),
            head.expects_continue(),
            self.settings.read_timeout,
        );
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
        log::debug!("{}: rejected request: {err}", self.peer);
        let response = error_response(err, &self.settings.server_name);
        if self.socket.write_all(&response).is_ok() {
            self.settings.stats.request_served();
            self.socket.close_lingering();
        }
        Outcome::Closed
    }

    fn into_idle(self) -> Outcome {
        Outcome::Idle(Connection {
            stream: self.socket.into_inner(),
            peer: self.peer,
            local: self.local,
            buffered: BytesMut::new(),
        })
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

fn log_access(environ: &Environ, status: StatusCode, bytes: u64) {
    access_log::record(&Entry {
        remote: environ.remote_addr().ip(),
        method: environ.method(),
        target: environ.head().target(),
        protocol: environ.protocol(),
        status: status.as_u16(),
        bytes,
    });
}
