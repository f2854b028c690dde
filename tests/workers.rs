//! Worker processes (`--workers N`): a master binds once and N children serve the port; a
//! killed child is replaced; SIGTERM stops them all; a killed master takes its children along.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::client::{get, Conn};
use common::process::Running;
use common::wait::wait_until;

const TWO_WORKERS: [&str; 6] = [
    "--workers",
    "2",
    "--bind",
    "127.0.0.1:0",
    "--min-threads",
    "2",
];

/// The process that served a request on a new connection (the demo page names it).
fn served_by(addr: SocketAddr) -> u32 {
    let text = Conn::new(common::connect(addr)).request(&get("/")).text();
    let pid = text
        .split("(process ")
        .nth(1)
        .and_then(|rest| rest.split(')').next());
    pid.and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no process named in {text}"))
}

/// Serves new connections until `count` processes have answered; their ids.
fn processes_serving(addr: SocketAddr, count: usize) -> HashSet<u32> {
    let mut seen = HashSet::new();
    wait_until(&format!("{count} processes serve"), || {
        seen.insert(served_by(addr));
        seen.len() >= count
    });
    seen
}

/// Whether process `pid` is gone (or a zombie nobody reaps).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn children_serve_one_port_and_a_killed_one_is_replaced() {
    let server = Running::start(&TWO_WORKERS);
    let addr = server.addrs[0];
    let first = processes_serving(addr, 2);
    assert!(
        !first.contains(&server.child.id()),
        "the master serves nothing"
    );
    let killed = *first.iter().next().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &killed.to_string()])
        .status();
    assert!(status.unwrap().success());
    server.line_with(&format!("worker process {killed} replaced"));
    let mut replaced = false;
    wait_until("a new process serves", || {
        let pid = served_by(addr);
        assert_ne!(pid, killed);
        replaced |= !first.contains(&pid);
        replaced
    });
}

#[test]
fn sigterm_stops_every_child_then_the_master() {
    let mut server = Running::start(&TWO_WORKERS);
    let children = processes_serving(server.addrs[0], 2);
    server.signal("TERM");
    assert!(server.wait_exit().success());
    for pid in children {
        assert!(gone(pid), "worker process {pid} outlived its master");
    }
    assert!(
        TcpStream::connect(server.addrs[0]).is_err(),
        "the port still accepts"
    );
}

#[test]
fn a_killed_master_takes_its_children_along() {
    let mut server = Running::start(&TWO_WORKERS);
    let children = processes_serving(server.addrs[0], 2);
    server.signal("KILL");
    server.wait_exit();
    for pid in children {
        wait_until(&format!("worker process {pid} exits"), || gone(pid));
    }
}

#[test]
fn max_requests_recycles_children_and_every_new_connection_is_served() {
    let args = [
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:0",
        "--max-requests",
        "5",
    ];
    let server = Running::start(&args);
    let mut seen = HashSet::new();
    wait_until("a third process serves", || {
        seen.insert(served_by(server.addrs[0]));
        seen.len() >= 3
    });
    server.line_with("finished (max_requests, or a stop); replaced");
}

#[test]
fn max_requests_loses_no_request_of_a_keep_alive_client() {
    let args = [
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:0",
        "--min-threads",
        "2",
        "--max-requests",
        "20",
    ];
    let server = Running::start(&args);
    let addr = server.addrs[0];
    let mut conn = Conn::new(common::connect(addr));
    let mut reconnects = 0;
    for n in 1..=1000 {
        let sent = conn.stream.write_all(&get("/"));
        let resp = sent.and_then(|()| conn.try_response(false));
        let resp =
            resp.unwrap_or_else(|e| panic!("request {n} (after {reconnects} reconnects): {e}"));
        assert_eq!(resp.status, 200, "request {n}");
        if resp.header("connection") == Some("close") {
            reconnects += 1;
            conn = Conn::new(common::connect(addr));
        }
    }
    assert!(
        reconnects >= 2,
        "the children recycled: {reconnects} reconnects"
    );
}
