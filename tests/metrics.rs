//! The metrics endpoint of a real server: it counts what the server serves, and keeps serving
//! across a restart.

mod common;

use std::net::{SocketAddr, TcpListener};

use common::client::{get, Conn};
use common::TestServer;

/// A server with its metrics endpoint; the endpoint's address.
fn server_with_metrics() -> (TestServer, SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (
        TestServer::start(TestServer::config().metrics_listener(socket)),
        addr,
    )
}

/// The value of the sample `name` in a scrape of `addr`.
fn sample(addr: SocketAddr, name: &str) -> u64 {
    let resp = Conn::new(common::connect(addr)).request(&get("/metrics"));
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let line = text
        .lines()
        .find(|line| line.split(' ').next() == Some(name));
    let value = line.and_then(|line| line.split(' ').nth(1));
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn the_counters_follow_what_the_server_serves() {
    let (server, metrics) = server_with_metrics();
    assert_eq!(sample(metrics, "skyrocket_up"), 1);
    assert!(sample(metrics, "skyrocket_threads") >= 2);
    let before = sample(metrics, "skyrocket_requests_total");
    let mut conn = Conn::new(server.connect());
    for _ in 0..3 {
        assert_eq!(conn.request(&get("/hello")).status, 200);
    }
    server.wait_for("three responses counted", |s| {
        s.requests_total >= before + 3
    });
    assert_eq!(sample(metrics, "skyrocket_requests_total"), before + 3);
    assert!(sample(metrics, "skyrocket_connections_total") >= 1);
}

#[test]
fn the_endpoint_keeps_serving_across_a_restart() {
    let (server, metrics) = server_with_metrics();
    assert_eq!(
        Conn::new(server.connect()).request(&get("/hello")).status,
        200
    );
    server.handle().restart().unwrap();
    assert_eq!(sample(metrics, "skyrocket_up"), 1);
    assert!(sample(metrics, "skyrocket_requests_total") >= 1);
}
