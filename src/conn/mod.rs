//! A client connection and what drives its socket: the lowest layer of the data plane,
//! beneath the pool and the actors.
//!
//! - [`Connection`]: an accepted socket with what travels with it between workers (bytes
//!   read, a partial request, the rest of a response, its place in an idle set).
//! - [`Socket`]: the socket as a worker drives it, non-blocking, every wait charged to a
//!   [`Budget`]; [`has_input`] and [`reset`] for whoever holds a parked one.
//! - [`Outbox`]: the rest of a response waiting for room in the send buffer.
//! - [`TlsSession`]: on a TLS interface, the rustls session every byte goes through.

mod budget;
mod outbox;
mod socket;
mod tls;

use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use bytes::BytesMut;

use crate::http::{ProxyProtocol, RequestHead};

pub(crate) use budget::Budget;
pub(crate) use outbox::{file_ended, Outbox};
pub(crate) use socket::{has_input, has_room, reset, Socket};
pub(crate) use tls::{Refused, TlsSession};

/// A connection's place in an idle set, carried by the connection while a worker owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// The set.
    pub(crate) set: u64,
    /// The table key.
    pub(crate) key: usize,
    /// Tells this connection from earlier ones at the same key.
    pub(crate) generation: u32,
}

/// An accepted connection on its way to a worker, or waiting for one.
///
/// It carries a plain `std::net::TcpStream`, never a registered tokio stream, so that it can
/// cross threads; bytes already read travel with it.
pub struct Connection {
    /// The client socket.
    pub(crate) stream: TcpStream,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The address the connection arrived on.
    pub(crate) local: SocketAddr,
    /// Bytes already read from the socket.
    pub(crate) buffered: BytesMut,
    /// Its place in a pool's idle set, once admitted there.
    pub(crate) ticket: Option<Ticket>,
    /// The socket is already in non-blocking mode, so serving it again costs no system call
    /// to set it.
    pub(crate) nonblocking: bool,
    /// When the request partly received must be complete (a slow client's budget, kept while
    /// the connection waits for the rest).
    pub(crate) request_deadline: Option<Instant>,
    /// A head already parsed whose small body is still arriving (see
    /// `worker::PREBUFFER_BODY`).
    pub(crate) head: Option<Box<RequestHead>>,
    /// The rest of a response waiting for room in the send buffer (a slow reader).
    pub(crate) outbox: Option<Box<Outbox>>,
    /// The PROXY protocol header the connection must begin with, until it has been read.
    pub(crate) proxy: Option<ProxyProtocol>,
    /// The client reached the proxy in front over TLS, as its PROXY header said:
    /// `wsgi.url_scheme` is `https`.
    pub(crate) tls: bool,
    /// On a TLS interface, the session (handshake state, keys, buffered records): it
    /// travels with the connection, so a handshake waits in the idle set like a partial head.
    pub(crate) tls_session: Option<Box<TlsSession>>,
}

impl Connection {
    /// A connection just accepted: nothing read, not yet admitted anywhere; it must begin
    /// with a PROXY header if `proxy` says so.
    pub(crate) fn accepted(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        proxy: Option<ProxyProtocol>,
    ) -> Self {
        Connection {
            stream,
            peer,
            local,
            buffered: BytesMut::new(),
            ticket: None,
            nonblocking: false,
            request_deadline: None,
            head: None,
            outbox: None,
            proxy,
            tls: false,
            tls_session: None,
        }
    }
}
