//! What the unit tests share: the one "wait until" and the test certificates (the same files
//! as the integration tests'), loopback connection pairs, TLS handshakes in memory, and pools
//! driven by no actor.
//!
//! Tests wait on channels or poll a condition, never sleep. Two waits involve the clock by
//! nature: a connection must age to expire, and a wake-up that must not happen is watched for
//! a while.

use std::future::Future;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use http::StatusCode;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConfig,
    ServerConnection, SupportedCipherSuite,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::app::{Application, Environ, Input, Reply};
use crate::conn::Connection;
use crate::dispatcher::Tick;
use crate::pool::{IdleSet, Pool, Settings};
use crate::stats::Stats;
use crate::tls::{ClientCerts, TlsInfo, TlsSettings};

#[path = "../tests/common/wait.rs"]
mod wait;

pub(crate) use wait::{wait_until, wait_until_async, WAIT};

#[path = "../tests/common/certs.rs"]
pub(crate) mod certs;

/// Read and write timeout of every client socket.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The Monitor's tick (and the pools' longest wait) in these tests.
pub(crate) const TICK: Duration = Duration::from_millis(20);
/// A keep-alive timeout short enough to watch expire.
pub(crate) const SHORT_TIMEOUT: Duration = Duration::from_millis(100);
/// A keep-alive timeout that never expires during a test.
pub(crate) const LONG_TIMEOUT: Duration = Duration::from_secs(60);
/// A wait no test outlasts: a worker waiting this long is woken only on purpose.
pub(crate) const FOREVER: Duration = Duration::from_secs(30);

/// The next item of `rx`, failing the test after `WAIT`.
pub(crate) async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Whether a future is already resolved, polling it once.
pub(crate) async fn is_ready<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

/// A loopback listener that hands out connected pairs.
pub(crate) fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A connected client socket (with timeouts) and the accepted side as a `Connection`.
pub(crate) fn pair(listener: &TcpListener) -> (TcpStream, Connection) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let (stream, peer) = listener.accept().expect("accept");
    let conn = Connection::accepted(stream, peer, listener.local_addr().unwrap(), None);
    (client, conn)
}

/// The client port a connection came from, to tell connections apart.
pub(crate) fn port(client: &TcpStream) -> u16 {
    client.local_addr().unwrap().port()
}

/// Reads from `client` until EOF or error: `Ok(0)` is how a client sees the server close.
fn read_to_close(client: &mut TcpStream) -> io::Result<usize> {
    let mut buf = [0u8; 256];
    loop {
        match client.read(&mut buf)? {
            0 => return Ok(0),
            _ => continue,
        }
    }
}

/// Asserts that the server closed `client` (EOF, not a client timeout).
pub(crate) fn assert_closed(client: &mut TcpStream) {
    let got = read_to_close(client).expect("EOF, not an error or a timeout");
    assert_eq!(got, 0);
}

/// [`assert_closed`], on a blocking thread (the actors under test share this one).
pub(crate) async fn assert_closed_async(mut client: TcpStream) {
    tokio::task::spawn_blocking(move || assert_closed(&mut client))
        .await
        .expect("client thread");
}

/// Reads the bytes a server-side stream received, e.g. to consume a request.
pub(crate) fn drain_input(conn: &mut Connection, len: usize) {
    let mut buf = vec![0u8; len];
    conn.stream.read_exact(&mut buf).expect("input arrives");
}

/// Takes a connection with input from `set`, checking that its peer has not hung up.
pub(crate) fn take(set: &IdleSet, timeout: Duration) -> Option<Connection> {
    let (conn, hung_up) = set.take_ready(timeout)?;
    assert!(!hung_up, "the client has not closed its side");
    Some(conn)
}

/// The environ of the request `raw` (a complete, valid head) from 10.1.2.3:5555.
pub(crate) fn environ(raw: impl AsRef<[u8]>) -> Environ {
    let mut buf = bytes::BytesMut::from(raw.as_ref());
    let limits = crate::http::Limits::default();
    let head = crate::http::parse_head(&mut buf, &limits)
        .expect("a valid head")
        .expect("a complete head");
    let local = "127.0.0.1:8000".parse().unwrap();
    let peer = "10.1.2.3:5555".parse().unwrap();
    Environ::new(head, local, peer, "http")
}

/// The application of the unit-level pools: answers 200 "ok".
fn ok_app() -> Arc<dyn Application> {
    Arc::new(|_e: &Environ, _i: &mut Input<'_>| Reply::text(StatusCode::OK, "ok"))
}

/// A pool (not driven by any actor) with one seat and the given longest wait.
pub(crate) fn new_pool(tick: Duration) -> (Arc<Pool>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let settings = Settings {
        app: ok_app(),
        limits: Default::default(),
        read_timeout: Duration::from_secs(5),
        max_body: u64::MAX,
        server_name: "test".into(),
        stats: stats.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        access_log: Arc::default(),
        forwarded: None,
    };
    let idle = IdleSet::new(stats.clone()).expect("an epoll instance");
    (Arc::new(Pool::new(settings, idle, 1, tick)), stats)
}

/// An idle set with its gauges.
pub(crate) fn new_set() -> (IdleSet, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let set = IdleSet::new(stats.clone()).expect("an epoll instance");
    (set, stats)
}

/// A stand-in for the Dispatcher's tick address: forwards every `Tick` into a channel.
struct Forward(UnboundedSender<Instant>);

impl Actor for Forward {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Tick> for Forward {
    type Result = ();

    fn handle(&mut self, _: Tick, _ctx: &mut Self::Context) {
        let _ = self.0.send(Instant::now());
    }
}

/// A recipient of ticks whose arrival times come out of the returned channel.
pub(crate) fn tick_recipient() -> (Recipient<Tick>, UnboundedReceiver<Instant>) {
    let (tx, rx) = unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

/// Every certificate of the PEM file `path`.
fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let certs = CertificateDer::pem_file_iter(path).expect("a certificate file");
    certs.map(|cert| cert.expect("a certificate")).collect()
}

/// A rustls client that trusts the certificates of the PEM file `server_cert`, offers
/// `suite` alone (and so its protocol version), ALPN `h2` then `http/1.1`, and presents
/// `client`'s certificate if given. Connections of one configuration share its sessions, so
/// a second one may resume.
pub(crate) fn tls_client(
    server_cert: &Path,
    client: Option<&certs::CertFiles>,
    suite: SupportedCipherSuite,
) -> Arc<ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = vec![suite];
    let mut roots = RootCertStore::empty();
    for cert in read_certs(server_cert) {
        roots.add(cert).expect("a trust anchor");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[suite.version()])
        .expect("the suite's version")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(files) => {
            let key = PrivateKeyDer::from_pem_file(&files.key).expect("a key file");
            let chain = read_certs(&files.cert);
            builder
                .with_client_auth_cert(chain, key)
                .expect("a client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A new connection of `client` to `localhost` with `server`, its handshake run in memory
/// (no socket): the server's side once both are done (and TLS 1.3's tickets delivered), or
/// why one side failed.
pub(crate) fn connect_tls(
    client: &Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> Result<ServerConnection, rustls::Error> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut client = ClientConnection::new(client.clone(), name)?;
    let mut server = ServerConnection::new(server)?;
    while client.is_handshaking() || server.is_handshaking() {
        let sent = transfer(&mut *client, &mut *server)?;
        let answered = transfer(&mut *server, &mut *client)?;
        assert!(sent || answered, "the handshake stalled");
    }
    transfer(&mut *server, &mut *client)?;
    Ok(server)
}

/// Moves what `from` has to send into `to`, which processes it; whether anything moved.
fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
) -> Result<bool, rustls::Error> {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("writing to a Vec");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("reading from a slice");
        to.process_new_packets()?;
    }
    Ok(!wire.is_empty())
}

/// What a TLS 1.3 connection (`TLS13_AES_128_GCM_SHA256`) to a server that asks optionally
/// for a client certificate tells the environ: with [`certs::client_pki`]'s client
/// certificate if `with_client_cert`. `name` names its scratch directory.
pub(crate) fn tls_info(name: &str, with_client_cert: bool) -> TlsInfo {
    let dir = certs::scratch_dir(name);
    let server = certs::self_signed(&dir);
    let pki = certs::client_pki(&dir);
    let policy = ClientCerts::Optional;
    let settings = TlsSettings::load(&server.cert, &server.key, Some(&pki.ca), policy)
        .expect("the test certificates load");
    let sent = with_client_cert.then_some(&pki.client);
    let suite = aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let client = tls_client(&server.cert, sent, suite);
    let conn = connect_tls(&client, settings.server_config()).expect("a handshake");
    std::fs::remove_dir_all(&dir).expect("remove the scratch directory");
    TlsInfo::of(&conn)
}
