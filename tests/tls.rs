//! HTTPS interfaces against real clients: rustls' and Python's `ssl`, client certificates
//! for each policy, plain HTTP on the TLS port, a PROXY header before the handshake, a stalled
//! handshake, a certificate reload, sessions resumed across worker processes, and a large
//! file.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use skyrocket::{ClientCerts, ConfigBuilder};

use common::certs::{client_pki, scratch_dir, self_signed, CertFiles, CLIENT_DN, CLIENT_SERIAL};
use common::client::{get, Conn};
use common::process::{run_command_to_end, socket_activated, Running};
use common::TestServer;

/// A server of the testbed on one TLS interface with `files`.
fn tls_config(files: &CertFiles) -> ConfigBuilder {
    skyrocket::Config::builder()
        .tls_bind("127.0.0.1:0", &files.cert, &files.key)
        .app(common::testbed::testbed)
        .min_threads(2)
        .handle_signals(false)
}

/// A client trusting `server_cert`, presenting `client` if given.
fn client_config(server_cert: &Path, client: Option<&CertFiles>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = (CertificateDer::pem_file_iter(&files.cert).unwrap())
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// A TLS connection to `addr` for `localhost` (the handshake happens on first use).
fn tls_stream(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, std::net::TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    StreamOwned::new(conn, common::connect(addr))
}

/// Sends `request` over TLS and reads until the server closes; the text, or the error.
fn exchange(addr: SocketAddr, config: Arc<ClientConfig>, request: &[u8]) -> Result<String, String> {
    let mut tls = tls_stream(addr, config);
    tls.write_all(request).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

const ENVIRON: &[u8] = b"GET /environ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// The value of `name` in the testbed's /environ answer.
fn var<'a>(environ: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    environ
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
}

#[test]
fn requests_over_tls_see_https_in_the_environ() {
    let dir = scratch_dir("tls-environ");
    let files = self_signed(&dir);
    let server = TestServer::start(tls_config(&files));
    let config = client_config(&files.cert, None);
    let answer = exchange(server.addr, config.clone(), ENVIRON).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(var(&answer, "wsgi.url_scheme"), Some("https"), "{answer}");
    assert_eq!(var(&answer, "HTTPS"), Some("on"));
    assert_eq!(var(&answer, "SSL_PROTOCOL"), Some("TLSv1.3"));
    assert!(var(&answer, "SSL_CIPHER").is_some_and(|c| c.starts_with("TLS13_")));
    assert_eq!(var(&answer, "SSL_CLIENT_VERIFY"), Some("NONE"));
    let keep_alive = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\nGET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let two = exchange(server.addr, config, keep_alive).unwrap();
    assert_eq!(two.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{two}");
}

#[test]
fn a_client_certificate_reaches_the_environ_under_each_policy() {
    let dir = scratch_dir("tls-client-certs");
    let files = self_signed(&dir);
    let pki = client_pki(&dir);
    let serve = |policy| TestServer::start(tls_config(&files).ca_certs(&pki.ca).cert_reqs(policy));
    let with_cert = client_config(&files.cert, Some(&pki.client));
    let without = client_config(&files.cert, None);

    let optional = serve(ClientCerts::Optional);
    let answer = exchange(optional.addr, with_cert.clone(), ENVIRON).unwrap();
    assert_eq!(
        var(&answer, "SSL_CLIENT_VERIFY"),
        Some("SUCCESS"),
        "{answer}"
    );
    assert_eq!(var(&answer, "SSL_CLIENT_S_DN"), Some(CLIENT_DN));
    assert_eq!(var(&answer, "SSL_CLIENT_SERIAL"), Some(CLIENT_SERIAL));
    let pem = var(&answer, "SSL_CLIENT_RAW_CERT").unwrap_or_default();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{answer}");
    let answer = exchange(optional.addr, without.clone(), ENVIRON).unwrap();
    assert_eq!(var(&answer, "SSL_CLIENT_VERIFY"), Some("NONE"), "{answer}");

    let required = serve(ClientCerts::Required);
    let refused = exchange(required.addr, without.clone(), ENVIRON);
    assert!(
        refused.is_err() || refused.as_deref() == Ok(""),
        "{refused:?}"
    );
    let answer = exchange(required.addr, with_cert.clone(), ENVIRON).unwrap();
    assert_eq!(
        var(&answer, "SSL_CLIENT_VERIFY"),
        Some("SUCCESS"),
        "{answer}"
    );

    let none = serve(ClientCerts::None);
    let answer = exchange(none.addr, with_cert, ENVIRON).unwrap();
    assert_eq!(
        var(&answer, "SSL_CLIENT_VERIFY"),
        Some("NONE"),
        "not asked: {answer}"
    );
}

#[test]
fn plain_http_on_the_tls_port_gets_a_plain_400_and_others_are_served_meanwhile() {
    let dir = scratch_dir("tls-plain");
    let files = self_signed(&dir);
    let server = TestServer::start(tls_config(&files));
    let mut plain = Conn::new(server.connect());
    let resp = plain.request(&get("/hello"));
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("HTTPS"), "{}", resp.text());
    assert!(plain.is_closed());
    let config = client_config(&files.cert, None);
    let answer = exchange(server.addr, config, ENVIRON).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

/// A TLS connection to `addr` that begins with `header` (a PROXY header), sent alone or in
/// one write with the client's first handshake record.
fn behind_a_proxy(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    header: &[u8],
    with_hello: bool,
) -> StreamOwned<ClientConnection, std::net::TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(config, name).unwrap();
    let mut tcp = common::connect(addr);
    let mut first = header.to_vec();
    if with_hello {
        conn.write_tls(&mut first).unwrap();
    }
    tcp.write_all(&first).unwrap();
    StreamOwned::new(conn, tcp)
}

#[test]
fn a_proxy_header_before_the_handshake_names_the_client() {
    // A proxy that passes TLS through (HAProxy in TCP mode with send-proxy, nginx's stream
    // module) sends its header in the clear, before the client's records.
    let dir = scratch_dir("tls-proxy");
    let files = self_signed(&dir);
    let builder = tls_config(&files).proxy_protocol(skyrocket::ProxyProtocol::Auto);
    let server = TestServer::start(builder);
    let config = client_config(&files.cert, None);
    let header = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 443\r\n";
    for with_hello in [false, true] {
        let mut tls = behind_a_proxy(server.addr, config.clone(), header, with_hello);
        tls.write_all(ENVIRON).unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert_eq!(
            var(&answer, "REMOTE_ADDR"),
            Some("192.0.2.7"),
            "{with_hello}"
        );
        assert_eq!(var(&answer, "wsgi.url_scheme"), Some("https"), "{answer}");
    }
    let mut plain = Conn::new(server.connect());
    plain.send(header);
    let resp = plain.request(&get("/hello"));
    assert_eq!(resp.status, 400, "plain HTTP after the header");
    assert!(resp.text().contains("HTTPS"), "{}", resp.text());
}

/// A server with one worker, whose TLS connections' handshakes may take `read_timeout`;
/// a connection to it that sent the first bytes of a handshake record and nothing more.
fn stalled(files: &CertFiles, read_timeout: Duration) -> (TestServer, std::net::TcpStream) {
    let builder = tls_config(files)
        .min_threads(1)
        .max_threads(1)
        .read_timeout(read_timeout)
        .tick(Duration::from_millis(50));
    let server = TestServer::start(builder);
    let mut stalled = server.connect();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    (server, stalled)
}

#[test]
fn a_stalled_handshake_holds_no_worker_and_is_closed_at_the_read_timeout() {
    let dir = scratch_dir("tls-stalled");
    let files = self_signed(&dir);
    let config = client_config(&files.cert, None);
    // The one worker serves others while the handshake waits (longer than any client does).
    let (server, _stalled) = stalled(&files, Duration::from_secs(60));
    let answer = exchange(server.addr, config, ENVIRON).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let (_server, mut late) = stalled(&files, Duration::from_millis(300));
    let mut rest = Vec::new();
    let closed = late.read_to_end(&mut rest);
    assert!(
        closed.is_ok() && rest.is_empty(),
        "closed unanswered: {closed:?} {rest:?}"
    );
}

/// The certificate the server presents to a new connection.
fn presented(addr: SocketAddr, config: Arc<ClientConfig>) -> Vec<u8> {
    let mut tls = tls_stream(addr, config);
    tls.write_all(ENVIRON).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let chain = tls.conn.peer_certificates().expect("a certificate");
    chain[0].to_vec()
}

#[test]
fn a_restart_loads_a_new_certificate_and_keeps_the_old_one_if_the_new_one_is_broken() {
    let dir = scratch_dir("tls-reload");
    let first = self_signed(&dir);
    let first_der = std::fs::read(&first.cert).unwrap();
    let server = TestServer::start(tls_config(&first));
    let old_config = client_config(&first.cert, None);
    let before = presented(server.addr, old_config);

    let renewed = self_signed(&scratch_dir("tls-reload-new"));
    std::fs::copy(&renewed.cert, &first.cert).unwrap();
    std::fs::copy(&renewed.key, &first.key).unwrap();
    server.handle().restart().unwrap();
    let new_config = client_config(&first.cert, None);
    let after = presented(server.addr, new_config.clone());
    assert_ne!(before, after, "the renewed certificate is presented");

    std::fs::write(&first.key, "not a key").unwrap();
    server.handle().restart().unwrap();
    assert_eq!(
        presented(server.addr, new_config),
        after,
        "the broken files are not used"
    );
    assert_ne!(first_der, std::fs::read(&first.cert).unwrap());
}

#[test]
fn python_ssl_gets_an_answer() {
    let dir = scratch_dir("tls-python");
    let files = self_signed(&dir);
    let server = TestServer::start(tls_config(&files));
    let script = format!(
        "import ssl, socket\n\
         ctx = ssl.create_default_context(cafile={cafile:?})\n\
         with socket.create_connection(('127.0.0.1', {port}), timeout=10) as raw:\n    \
             with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n        \
                 s.sendall(b'GET /hello HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n')\n        \
                 data = b''\n        \
                 while chunk := s.recv(65536):\n            \
                     data += chunk\n        \
                 print(s.version(), data.split(b'\\r\\n')[0].decode())\n",
        cafile = files.cert.to_str().unwrap(),
        port = server.addr.port(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "TLSv1.3 HTTP/1.1 200 OK");
}

#[test]
fn a_large_sparse_file_goes_out_over_tls_with_flat_memory() {
    let dir = scratch_dir("tls-large-file");
    let files = self_signed(&dir);
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let size: u64 = 1 << 30;
    std::fs::File::create(root.join("big"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let mut args = vec!["--method", "fs", "--document-root", root.to_str().unwrap()];
    args.extend(["--tls-bind", "127.0.0.1:0", "--min-threads", "2"]);
    let certs = cert_args(&files);
    args.extend(certs.iter().map(String::as_str));
    let server = Running::start(&args);
    let mut tls = tls_stream(server.addrs[0], client_config(&files.cert, None));
    tls.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (mut total, mut buf) = (0u64, vec![0u8; 1 << 16]);
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("after {total} bytes: {e}"),
        }
    }
    assert!(total > size, "the head and the whole file: {total}");
    let peak = peak_resident_kib(server.child.id());
    assert!(
        peak < 64 * 1024,
        "the server's resident memory peaked at {peak} KiB"
    );
}

/// The peak resident memory of process `pid` (`VmHWM`), in KiB.
fn peak_resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_slow_reader_of_a_tls_response_holds_no_worker() {
    let dir = scratch_dir("tls-slow-reader");
    let files = self_signed(&dir);
    let builder = tls_config(&files).min_threads(1).max_threads(1);
    let server = TestServer::start(builder);
    let config = client_config(&files.cert, None);
    // 16 MiB of bytes in memory, far more than the socket buffers and rustls' limit hold.
    let mut slow = tls_stream(server.addr, config.clone());
    slow.write_all(b"GET /bytes?kib=16384 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    slow.read_exact(&mut first).unwrap();

    let answer = exchange(server.addr, config, ENVIRON).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n"),
        "served by the one worker: {answer}"
    );

    let mut rest = vec![0u8; 1 << 16];
    let mut total = 1;
    while total < 16 << 20 {
        total += slow.read(&mut rest).unwrap();
    }
}

/// The binary's arguments for `files`' certificate.
fn cert_args(files: &CertFiles) -> [String; 4] {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    [
        "--certfile".into(),
        path(&files.cert),
        "--keyfile".into(),
        path(&files.key),
    ]
}

#[test]
fn worker_processes_serve_the_tls_interfaces_of_their_master() {
    let dir = scratch_dir("tls-workers");
    let files = self_signed(&dir);
    let certs = cert_args(&files);
    let mut args = vec![
        "--workers",
        "2",
        "--min-threads",
        "2",
        "--bind",
        "127.0.0.1:0",
    ];
    args.extend(["--tls-bind", "127.0.0.1:0"]);
    args.extend(certs.iter().map(String::as_str));
    let server = Running::start(&args);
    assert_eq!(server.tls, [false, true], "{:?}", server.addrs);
    let answer = exchange(server.addrs[1], client_config(&files.cert, None), ENVIRON).unwrap();
    assert_eq!(var(&answer, "HTTPS"), Some("on"), "{answer}");
    let plain = Conn::new(common::connect(server.addrs[0])).request(&get("/hello"));
    assert_eq!(plain.status, 200);
}

/// How a new TLS connection to `addr` shook hands; it serves one request.
fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> HandshakeKind {
    let mut tls = tls_stream(addr, config);
    tls.write_all(ENVIRON).unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    tls.conn.handshake_kind().unwrap()
}

#[test]
fn a_session_resumes_on_every_worker_process_and_after_a_reload() {
    // Each child seals tickets with the keys its master passed: a ticket from one opens on
    // the other (the kernel spreads new connections over both), and on the reload's children.
    let dir = scratch_dir("tls-resume-workers");
    let files = self_signed(&dir);
    let certs = cert_args(&files);
    let mut args = vec!["--workers", "2", "--min-threads", "2"];
    args.extend(["--tls-bind", "127.0.0.1:0"]);
    args.extend(certs.iter().map(String::as_str));
    let server = Running::start(&args);
    let addr = server.addrs[0];
    let config = client_config(&files.cert, None);
    assert_eq!(handshake(addr, config.clone()), HandshakeKind::Full);
    for n in 0..16 {
        assert_eq!(
            handshake(addr, config.clone()),
            HandshakeKind::Resumed,
            "{n}"
        );
    }
    server.signal("HUP");
    server.line_with("reload done: 2 new worker processes serve, 2 old ones stop");
    for n in 0..8 {
        assert_eq!(
            handshake(addr, config.clone()),
            HandshakeKind::Resumed,
            "{n}"
        );
    }
}

#[test]
fn a_passed_socket_named_tls_serves_tls_and_needs_the_certificate_files() {
    let dir = scratch_dir("tls-activation");
    let files = self_signed(&dir);
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let certs = cert_args(&files);
    // --tls-bind's address is not bound under socket activation; the passed socket is served.
    let mut args = vec!["--tls-bind", "127.0.0.1:0"];
    args.extend(certs.iter().map(String::as_str));
    let command = socket_activated(passed.as_raw_fd(), "tls", &args);
    let server = Running::from_command(command);
    assert_eq!(server.tls, [true]);
    let answer = exchange(server.addrs[0], client_config(&files.cert, None), ENVIRON).unwrap();
    assert_eq!(var(&answer, "HTTPS"), Some("on"), "{answer}");

    let out = run_command_to_end(socket_activated(passed.as_raw_fd(), "tls", &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("needs --certfile"), "{stderr}");
}
