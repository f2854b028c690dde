//! systemd: socket activation (`LISTEN_FDS`), state notifications (`NOTIFY_SOCKET`), and
//! `--reuse-port` for independent servers on one port.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::client::{get, Conn};
use common::process::{run_command_to_end, socket_activated, Running};
use common::CLIENT_TIMEOUT;
use skyrocket::Config;

#[test]
fn serves_the_socket_systemd_passes_instead_of_binding_and_keeps_it_across_restarts() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = passed.local_addr().unwrap();
    let args = ["--bind", "127.0.0.1:0"];
    let server = Running::from_command(socket_activated(passed.as_raw_fd(), "web", &args));
    assert_eq!(server.addrs, [addr]);
    let expected = format!("socket activation: serving web ({addr}); --bind ignored");
    assert!(
        server.startup.iter().any(|l| l.contains(&expected)),
        "{:?}",
        server.startup
    );
    let mut conn = Conn::new(common::connect(addr));
    assert_eq!(conn.request(&get("/")).status, 200);
    server.signal("HUP");
    server.line_with("restarted");
    assert_eq!(conn.request(&get("/")).status, 200);
    let resp = Conn::new(common::connect(addr)).request(&get("/"));
    assert_eq!(resp.status, 200);
}

#[test]
fn without_signal_handling_the_server_keeps_the_passed_socket_open() {
    let passed = TcpListener::bind("127.0.0.1:0").unwrap();
    let args = ["--no-signals"];
    let server = Running::from_command(socket_activated(passed.as_raw_fd(), "web", &args));
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200);
    let fd = format!("/proc/{}/fd/3", server.child.id());
    let target = std::fs::read_link(&fd).expect("fd 3 still open");
    assert!(
        target.to_string_lossy().starts_with("socket:"),
        "{target:?}"
    );
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_refused() {
    let domain = socket2::Domain::IPV4;
    let unlistened = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cases = [
        (unlistened.as_raw_fd(), "not a listening socket"),
        (udp.as_raw_fd(), "not a TCP stream socket"),
    ];
    for (fd, why) in cases {
        let out = run_command_to_end(socket_activated(fd, "web", &["--no-signals"]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let line = format!("skyrocket: error: socket activation: fd 3: {why}");
        assert!(stderr.starts_with(&line), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A datagram socket standing in for systemd's, with an abstract name unique to the test.
fn notify_socket() -> (UnixDatagram, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("skyrocket-test-{}-{n}", std::process::id());
    let addr = net::SocketAddr::from_abstract_name(&name).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    (socket, format!("@{name}"))
}

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0; 1024];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let (socket, name) = notify_socket();
    let args = ["--bind", "127.0.0.1:0"];
    let mut server = Running::start_with(&args, "info", &[("NOTIFY_SOCKET", &name)]);
    assert_eq!(next_message(&socket), "READY=1\n");
    server.signal("HUP");
    let reloading = next_message(&socket);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'));
    assert!(
        usec.is_some_and(|u| u.parse::<u64>().is_ok()),
        "{reloading}"
    );
    assert_eq!(next_message(&socket), "READY=1\n");
    server.signal("TERM");
    assert_eq!(next_message(&socket), "STOPPING=1\n");
    assert!(server.wait_exit().success());
}

/// Reads notifications until `READY=1` and three `WATCHDOG=1` have come, whatever their
/// order (a master pings while its children start).
fn hears_ready_and_watchdog_pings(socket: &UnixDatagram) {
    let (mut ready, mut pings) = (false, 0);
    while !(ready && pings >= 3) {
        match next_message(socket).as_str() {
            "READY=1\n" => ready = true,
            "WATCHDOG=1\n" => pings += 1,
            other => panic!("unexpected notification {other:?}"),
        }
    }
}

#[test]
fn a_watchdog_hears_the_server_and_the_master_ping() {
    // WatchdogSec=200ms: pings every 100 ms; the children of a master inherit no watchdog.
    for workers in ["1", "2"] {
        let (socket, name) = notify_socket();
        let args = ["--bind", "127.0.0.1:0", "--workers", workers];
        let env = [
            ("NOTIFY_SOCKET", name.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ];
        let _server = Running::start_with(&args, "info", &env);
        hears_ready_and_watchdog_pings(&socket);
    }
    // A watchdog meant for another process is not this one's.
    let (socket, name) = notify_socket();
    let env = [
        ("NOTIFY_SOCKET", name.as_str()),
        ("WATCHDOG_USEC", "200000"),
        ("WATCHDOG_PID", "1"),
    ];
    let _server = Running::start_with(&["--bind", "127.0.0.1:0"], "info", &env);
    assert_eq!(next_message(&socket), "READY=1\n");
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0; 64];
    assert!(socket.recv(&mut buf).is_err(), "pinged without a watchdog");
}

#[test]
fn a_notify_socket_path_is_heard_too() {
    let dir = std::env::temp_dir().join(format!("skyrocket-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let socket = UnixDatagram::bind(&dir).unwrap();
    socket.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let path = dir.to_str().unwrap();
    let args = ["--bind", "127.0.0.1:0", "--no-signals"];
    let _server = Running::start_with(&args, "info", &[("NOTIFY_SOCKET", path)]);
    assert_eq!(next_message(&socket), "READY=1\n");
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn servers_with_reuse_port_share_one_port() {
    let first = Config::builder()
        .bind("127.0.0.1:0")
        .app(common::testbed::testbed)
        .min_threads(1)
        .handle_signals(false)
        .reuse_port(true);
    let first = common::TestServer::start(first);
    let addr: SocketAddr = first.addr;
    let bind = addr.to_string();
    let second = Running::start(&["--bind", &bind, "--reuse-port", "--no-signals"]);
    assert_eq!(second.addrs, [addr]);
    for _ in 0..4 {
        let resp = Conn::new(common::connect(addr)).request(&get("/hello"));
        assert_eq!(resp.status, 200);
    }
}
