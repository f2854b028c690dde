//! The Listener actor: accepts connections on one interface and sends them to the Dispatcher.
//!
//! Backpressure: while every worker the pool may have (`max_threads`) is busy and
//! `max_queued` accepted connections already wait for one, the Listener stops accepting and
//! re-checks every [`BACKPRESSURE_POLL`]; new clients then wait in the kernel's backlog
//! (`queue_size`) instead of in the server's memory. Without `max_threads` the pool grows
//! instead, and accepting never pauses.
//!
//! Standby: a worker process of a master (`--workers`) owns one socket of each interface's
//! `SO_REUSEPORT` group and watches the others on standby, taking only connections that
//! their owner leaves waiting for `standby_delay` (see `master::group`).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rustls::ServerConfig;
use tokio::io::unix::AsyncFd;

use crate::config::Proxies;
use crate::conn::{Connection, TlsSession};
use crate::stats::{Gauge, Stats};

/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How often a Listener paused by backpressure checks whether it may accept again.
pub(crate) const BACKPRESSURE_POLL: Duration = Duration::from_millis(5);

/// When accepting pauses: every worker the pool may have is serving (a free worker would take
/// a new connection at once) and enough connections already wait. Silent connections do not
/// stop accepting: they keep no worker busy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backpressure {
    /// The pool's limit (0: none, never pause).
    pub(crate) max_threads: usize,
    /// Accepted connections allowed to wait for a worker once the pool is at its limit.
    pub(crate) max_queued: usize,
}

impl Backpressure {
    /// Whether accepting more now would only grow the server's queue.
    fn holds(&self, stats: &Stats) -> bool {
        self.max_threads != 0
            && stats.get(Gauge::Busy) >= self.max_threads
            && stats.waiting() >= self.max_queued
    }
}

/// Stops accepting; the listening socket stays open with the Server (connections wait in the
/// kernel's backlog).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Pause;

/// Accepts on one listening socket.
pub(crate) struct Listener {
    /// A duplicate of the Server's listening socket (non-blocking), taken when started.
    socket: Option<TcpListener>,
    /// The bound address.
    addr: SocketAddr,
    /// Where accepted connections go.
    dispatcher: Recipient<Connection>,
    /// Shared totals.
    stats: Arc<Stats>,
    /// When to stop accepting for a while.
    backpressure: Backpressure,
    /// Whether connections begin with a PROXY header, and from whom they are accepted then.
    proxies: Arc<Proxies>,
    /// On a TLS interface, the configuration every connection's session starts from.
    tls: Option<Arc<ServerConfig>>,
    /// On a sibling worker process's socket, how long a connection is left for its owner
    /// (`Config::standby_delay`); `None` on this process's own sockets.
    standby: Option<Duration>,
}

impl Listener {
    /// A Listener on `socket` (a non-blocking duplicate of the Server's), a TLS interface if
    /// `tls` is given, on standby if it is a sibling's socket.
    pub(crate) fn new(
        socket: TcpListener,
        dispatcher: Recipient<Connection>,
        stats: Arc<Stats>,
        backpressure: Backpressure,
        proxies: Arc<Proxies>,
        tls: Option<Arc<ServerConfig>>,
        standby: Option<Duration>,
    ) -> Self {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Listener {
            socket: Some(socket),
            addr,
            dispatcher,
            stats,
            backpressure,
            proxies,
            tls,
            standby,
        }
    }
}

impl Actor for Listener {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        // SAFETY: the AsyncFd owns the std TcpListener, whose descriptor is open and the same
        // for the listener's whole life; nothing else closes it (the Server holds a duplicate).
        match unsafe { AsyncFd::register(socket) } {
            Ok(fd) => {
                let accepting = Accepting {
                    fd,
                    addr: self.addr,
                    dispatcher: self.dispatcher.clone(),
                    stats: self.stats.clone(),
                    backpressure: self.backpressure,
                    proxies: self.proxies.clone(),
                    tls: self.tls.clone(),
                    standby: self.standby,
                };
                ctx.spawn(accepting.run().into_actor(self));
            }
            Err(e) => {
                log::error!("cannot watch listening socket {}: {}", self.addr, e);
                ctx.stop();
            }
        }
    }
}

impl actix::Handler<Pause> for Listener {
    type Result = ();

    fn handle(&mut self, _: Pause, ctx: &mut Self::Context) {
        log::debug!("stopped accepting on {}", self.addr);
        ctx.stop();
    }
}

/// The accept loop's state.
struct Accepting {
    /// The listening socket, registered with this arbiter's event loop.
    fd: AsyncFd<TcpListener>,
    /// The bound address (SERVER_NAME/PORT unless bound to a wildcard).
    addr: SocketAddr,
    /// Where accepted connections go.
    dispatcher: Recipient<Connection>,
    /// Shared totals.
    stats: Arc<Stats>,
    /// When to stop accepting for a while.
    backpressure: Backpressure,
    /// Whether connections begin with a PROXY header, and from whom they are accepted then.
    proxies: Arc<Proxies>,
    /// On a TLS interface, the configuration every connection's session starts from.
    tls: Option<Arc<ServerConfig>>,
    /// See [`Listener::standby`].
    standby: Option<Duration>,
}

impl Accepting {
    /// Accepts one connection at a time. On standby, a connection that was not waiting at the
    /// last accept is given the standby delay for its owner to take it first; once one is
    /// taken, the rest waiting are taken at once.
    async fn run(self) {
        let mut taking = false;
        loop {
            self.wait_for_room().await;
            let mut ready = match self.fd.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("listening socket {} failed: {e}", self.addr);
                    return;
                }
            };
            if let (Some(delay), false) = (self.standby, taking) {
                tokio::time::sleep(delay).await;
            }
            taking = match ready.try_io(|fd| fd.get_ref().accept()) {
                Ok(Ok((stream, peer))) => {
                    self.hand_over(stream, peer);
                    true
                }
                Ok(Err(e)) => pause_after(e).await,
                Err(_would_block) => false,
            };
        }
    }

    /// Returns once the pool has room for one more connection (at once, almost always).
    async fn wait_for_room(&self) {
        if !self.backpressure.holds(&self.stats) {
            return;
        }
        log::debug!(
            "every worker busy and the queue full: pausing accept on {}",
            self.addr
        );
        while self.backpressure.holds(&self.stats) {
            tokio::time::sleep(BACKPRESSURE_POLL).await;
        }
        log::debug!("accepting again on {}", self.addr);
    }

    /// Sends an accepted connection to the Dispatcher (or closes it).
    fn hand_over(&self, stream: std::net::TcpStream, peer: SocketAddr) {
        let proxy = self.proxies.protocol;
        if proxy.is_some() && !self.proxies.allow_from.contains(peer.ip()) {
            log::debug!("{peer}: not allowed to send a PROXY header; closed");
            return;
        }
        let _ = stream.set_nodelay(true);
        let local = match self.addr.ip().is_unspecified() {
            true => stream.local_addr().unwrap_or(self.addr),
            false => self.addr,
        };
        let mut conn = Connection::accepted(stream, peer, local, proxy);
        if let Some(config) = &self.tls {
            match TlsSession::new(config.clone()) {
                Ok(session) => conn.tls_session = Some(Box::new(session)),
                Err(e) => return log::warn!("{peer}: cannot start a TLS session: {e}"),
            }
        }
        log::debug!("{peer}: accepted on {local}");
        self.stats.connection_accepted();
        self.dispatcher.do_send(conn);
    }
}

/// Pauses after a failed accept, unless only that connection failed; whether more may be
/// waiting to be taken at once.
async fn pause_after(err: io::Error) -> bool {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    ) {
        return true;
    }
    log::warn!("accept failed: {err}; pausing");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
    false
}
