//! The `skyrocket` binary's command line, run as a user would.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::client::{get, Conn};

const BIN: &str = env!("CARGO_BIN_EXE_skyrocket");

/// A running binary, killed and reaped on drop.
struct Running {
    /// The process.
    child: Child,
    /// The addresses of its "Listening on sockets" line.
    addrs: Vec<SocketAddr>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skyrocket");
        let line = listening_line(&mut child);
        let list = line
            .split("Listening on sockets: ")
            .nth(1)
            .expect("addresses");
        let addrs = list
            .split(", ")
            .map(|a| a.trim().parse().expect(a))
            .collect();
        Running { child, addrs }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stderr lines (on a thread, so the wait has a timeout) until the start-up line.
fn listening_line(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Listening on sockets:") {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the start-up line within 20 s")
}

fn run_to_end(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start skyrocket");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("skyrocket (pid {pid}) should exit on its own"))
        .expect("output")
}

#[test]
fn listens_on_ipv4_and_ipv6_with_real_ports_and_serves_the_demo() {
    let server = Running::start(&["--bind", "127.0.0.1:0", "--bind", "[::1]:0", "--no-signals"]);
    assert_eq!(server.addrs.len(), 2);
    assert!(server.addrs[0].is_ipv4() && server.addrs[1].is_ipv6());
    for addr in &server.addrs {
        assert_ne!(addr.port(), 0);
        let resp = Conn::new(common::connect(*addr)).request(&get("/any/path?q=1"));
        assert_eq!(resp.status, 200);
        assert!(
            resp.text().contains("PATH_INFO=/any/path"),
            "{}",
            resp.text()
        );
    }
}

#[test]
fn flags_are_accepted() {
    let server = Running::start(&[
        "--bind",
        "127.0.0.1:0",
        "--method",
        "wsgi",
        "--min-threads",
        "2",
        "--max-threads",
        "4",
        "--queue-size",
        "64",
        "--timeout",
        "0.5",
        "--read-timeout",
        "1.5",
        "--shutdown-timeout",
        "2",
        "--no-signals",
    ]);
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200);
}

#[test]
fn bad_flags_are_a_one_line_error() {
    let table: [&[&str]; 7] = [
        &["--bogus"],
        &["--min-threads", "0"],
        &["--min-threads", "abc"],
        &["--min-threads", "4", "--max-threads", "2"],
        &["--timeout", "-1"],
        &["--bind", "localhost"],
        &["--method", "cgi"],
    ];
    for args in table {
        let out = run_to_end(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_port_in_use_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_to_end(&["--bind", &addr, "--no-signals"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&addr), "{stderr}");
}
