//! Shared helpers for the integration tests: a server that stops itself on drop, and a raw
//! HTTP/1.1 client with timeouts on every socket.
#![allow(dead_code)]

pub mod certs;
pub mod client;
pub mod process;
pub mod wait;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use skyrocket::{Config, ConfigBuilder, ServerHandle, StatusReport};

#[path = "../../examples/testbed/app.rs"]
pub mod testbed;

/// Every client socket gives up after this long, so a broken server fails a test instead of
/// hanging it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 port 0, stopped and joined when dropped.
pub struct TestServer {
    /// The running server.
    handle: ServerHandle,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TestServer {
    /// The testbed application with small pools and no signal handling.
    pub fn testbed() -> TestServer {
        TestServer::start(TestServer::config())
    }

    /// The test defaults: testbed app, loopback, port 0, signals left alone.
    pub fn config() -> ConfigBuilder {
        Config::builder()
            .bind("127.0.0.1:0")
            .app(testbed::testbed)
            .min_threads(2)
            .handle_signals(false)
    }

    /// One worker (no more) and a long read timeout: for showing that a slow client holds no
    /// worker. No application yet.
    pub fn one_worker() -> ConfigBuilder {
        Config::builder()
            .bind("127.0.0.1:0")
            .min_threads(1)
            .max_threads(1)
            .read_timeout(Duration::from_secs(60))
            .handle_signals(false)
    }

    /// Starts a server from `builder`.
    pub fn start(builder: ConfigBuilder) -> TestServer {
        let handle = skyrocket::spawn(builder.build().expect("valid test config"))
            .expect("test server starts");
        let addr = handle.addrs()[0];
        TestServer { handle, addr }
    }

    /// A connected client socket with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// The server's gauges and totals.
    pub fn status(&self) -> StatusReport {
        self.handle.status().expect("server answers Status")
    }

    /// A client with a small receive buffer, so that the server's writes stall soon.
    pub fn connect_small_window(&self) -> TcpStream {
        let domain = socket2::Domain::IPV4;
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&self.addr.into()).unwrap();
        with_timeouts(socket.into())
    }

    /// A client connected from `source`, an IPv4 address of this machine (any of
    /// 127.0.0.0/8), with read and write timeouts.
    pub fn connect_from(&self, source: &str) -> TcpStream {
        let domain = socket2::Domain::IPV4;
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
        let source: SocketAddr = format!("{source}:0").parse().unwrap();
        socket.bind(&source.into()).unwrap();
        socket.connect(&self.addr.into()).unwrap();
        with_timeouts(socket.into())
    }

    /// Polls the status (not a sleep standing in for an event) until `cond` holds; fails
    /// after [`wait::WAIT`].
    pub fn wait_for(&self, what: &str, cond: impl Fn(&StatusReport) -> bool) {
        wait::wait_until(what, || cond(&self.status()));
    }

    /// The handle, to restart or stop explicitly.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }
}

/// Connects to `addr` with [`CLIENT_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    with_timeouts(TcpStream::connect(addr).expect("connect to test server"))
}

/// `stream` with [`CLIENT_TIMEOUT`] on reads and writes.
fn with_timeouts(stream: TcpStream) -> TcpStream {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}
