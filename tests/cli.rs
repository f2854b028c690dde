//! The `skyrocket` binary's command line, run as a user would.

mod common;

use std::net::TcpListener;

use common::client::{get, Conn};
use common::process::{run_to_end, Running};

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
fn a_host_name_binds_every_address_it_resolves_to() {
    use std::net::{SocketAddr, ToSocketAddrs};
    let server = Running::start(&["--bind", "localhost:0", "--no-signals"]);
    let ips: Vec<_> = server.addrs.iter().map(SocketAddr::ip).collect();
    assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{ips:?}");
    let mut resolved: Vec<_> = ("localhost", 0)
        .to_socket_addrs()
        .unwrap()
        .map(|a| a.ip())
        .collect();
    resolved.sort();
    resolved.dedup();
    assert_eq!(ips.len(), resolved.len(), "{ips:?} for {resolved:?}");
    assert!(
        resolved.iter().all(|ip| ips.contains(ip)),
        "{ips:?} for {resolved:?}"
    );
    for addr in &server.addrs {
        let resp = Conn::new(common::connect(*addr)).request(&get("/"));
        assert_eq!(resp.status, 200, "{addr}");
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
        "--drain-idle",
        "0.2",
        "--standby-delay",
        "0.01",
        "--max-queued",
        "16",
        "--max-headers",
        "3",
        "--max-body",
        "5",
        "--no-signals",
    ]);
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200);
    let too_long = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabcdef";
    let resp = Conn::new(common::connect(server.addrs[0])).request(too_long);
    assert_eq!(resp.status, 413, "--max-body");
    let many = b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let resp = Conn::new(common::connect(server.addrs[0])).request(many);
    assert_eq!(resp.status, 431, "--max-headers");
}

#[test]
fn proxy_flags_are_accepted() {
    let server = Running::start(&[
        "--bind",
        "127.0.0.1:0",
        "--proxy-protocol",
        "auto",
        "--proxy-allow-from",
        "127.0.0.0/8",
        "--forwarded-allow-ips",
        "10.0.0.0/8",
        "--no-signals",
    ]);
    let mut conn = Conn::new(common::connect(server.addrs[0]));
    conn.send(b"PROXY TCP4 10.0.0.5 10.0.0.1 40000 80\r\n");
    let forwarded = b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n";
    let resp = conn.request(forwarded);
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("192.0.2.7"), "{}", resp.text());
}

#[test]
fn bad_flags_are_a_one_line_error() {
    let table: [&[&str]; 21] = [
        &["--bogus"],
        &["--workers", "0"],
        &["--worker-timeout", "soon"],
        &["--metrics", "nowhere"],
        &["--proxy-protocol", "v3"],
        &["--proxy-allow-from", "10.0.0.0/33"],
        &["--forwarded-allow-ips", "127.0.0.1,nope"],
        &["--access-log", "/nonexistent/skyrocket/access.log"],
        &["--access-log-format", "xml"],
        &["--bind", "no-such-host.invalid:80"],
        &["--min-threads", "0"],
        &["--min-threads", "abc"],
        &["--min-threads", "4", "--max-threads", "2"],
        &["--timeout", "-1"],
        &["--drain-idle", "soon"],
        &["--standby-delay", "soon"],
        &["--bind", "localhost"],
        &["--method", "cgi"],
        &["--max-body", "-1"],
        &["--method", "fs"],
        &[
            "--method",
            "fs",
            "--document-root",
            "/nonexistent/skyrocket",
        ],
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

#[test]
fn sigterm_stops_gracefully_with_status_0() {
    let mut server = Running::start(&["--bind", "127.0.0.1:0"]);
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200);
    server.signal("TERM");
    assert!(server.wait_exit().success());
}

#[test]
fn method_fs_serves_the_document_root() {
    let root = std::env::temp_dir().join(format!("skyrocket-cli-fs-{}", std::process::id()));
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/note.txt"), "from disk\n").unwrap();
    let server = Running::start(&[
        "--bind",
        "127.0.0.1:0",
        "--method",
        "fs",
        "--document-root",
        root.to_str().unwrap(),
        "--display-index",
        "--no-signals",
    ]);
    let addr = server.addrs[0];
    let resp = Conn::new(common::connect(addr)).request(&get("/dir/note.txt"));
    assert_eq!((resp.status, resp.text().as_str()), (200, "from disk\n"));
    let resp = Conn::new(common::connect(addr)).request(&get("/dir/"));
    assert!(resp.text().contains("note.txt"), "listed");
    drop(server);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn no_signals_leaves_signals_to_their_default_action() {
    use std::os::unix::process::ExitStatusExt;
    let mut server = Running::start(&["--bind", "127.0.0.1:0", "--no-signals"]);
    server.signal("USR1");
    let status = server.wait_exit();
    assert_eq!(
        status.signal(),
        Some(10),
        "SIGUSR1 killed it: no restart handler"
    );
}

#[test]
fn sigusr1_and_sighup_restart_without_closing_the_socket() {
    let server = Running::start(&["--bind", "127.0.0.1:0"]);
    for signal in ["USR1", "HUP"] {
        server.signal(signal);
        server.line_with("restarted");
        let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
        assert_eq!(resp.status, 200, "after SIG{signal}");
    }
}

#[test]
fn access_log_lines_are_in_common_log_format() {
    let server = Running::start_with_log(&["--bind", "127.0.0.1:0"], "skyrocket::access=info");
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/clf?x=1"));
    assert_eq!(resp.status, 200);
    let line = server.line_with("\"GET /clf?x=1 HTTP/1.1\"");
    let clf = line
        .split("skyrocket::access] ")
        .nth(1)
        .expect("the access target");
    let len = resp.body.len();
    assert!(clf.starts_with("127.0.0.1 - - ["), "{clf}");
    assert!(
        clf.ends_with(&format!("\"GET /clf?x=1 HTTP/1.1\" 200 {len}")),
        "{clf}"
    );
}

#[test]
fn sigterm_does_not_wait_for_silent_connections() {
    let mut server = Running::start(&["--bind", "127.0.0.1:0", "--shutdown-timeout", "60"]);
    let _silent = common::connect(server.addrs[0]);
    let mut idle = Conn::new(common::connect(server.addrs[0]));
    assert_eq!(idle.request(&get("/")).status, 200);
    server.signal("TERM");
    assert!(server.wait_exit().success());
}

#[test]
fn access_log_dash_writes_plain_lines_to_stdout() {
    let server = Running::start_capturing_stdout(&[
        "--bind",
        "127.0.0.1:0",
        "--no-signals",
        "--access-log",
        "-",
        "--access-log-format",
        "combined",
    ]);
    let raw = b"GET /out HTTP/1.1\r\nHost: t\r\nUser-Agent: ua/1\r\n\r\n";
    let resp = Conn::new(common::connect(server.addrs[0])).request(raw);
    let line = server.stdout_line();
    assert!(line.starts_with("127.0.0.1 - - ["), "no prefix: {line}");
    let len = resp.body.len();
    let tail = format!("] \"GET /out HTTP/1.1\" 200 {len} \"-\" \"ua/1\"");
    assert!(line.ends_with(&tail), "{line}");
}

#[test]
fn sigusr1_reopens_the_access_log_file() {
    let path = std::env::temp_dir().join(format!("skyrocket-cli-{}.log", std::process::id()));
    let rotated = path.with_extension("log.1");
    let server = Running::start(&[
        "--bind",
        "127.0.0.1:0",
        "--access-log",
        path.to_str().unwrap(),
    ]);
    let addr = server.addrs[0];
    assert_eq!(
        Conn::new(common::connect(addr)).request(&get("/a")).status,
        200
    );
    common::wait::wait_until("the first line", || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.contains("GET /a "))
    });
    std::fs::rename(&path, &rotated).unwrap();
    server.signal("USR1");
    server.line_with("restarted");
    assert_eq!(
        Conn::new(common::connect(addr)).request(&get("/b")).status,
        200
    );
    common::wait::wait_until("a line in the new file", || {
        std::fs::read_to_string(&path).is_ok_and(|text| text.contains("GET /b "))
    });
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&rotated);
}

#[test]
fn tls_sockets_are_marked_in_the_start_up_line() {
    let dir = common::certs::scratch_dir("cli-tls");
    let server = common::certs::self_signed(&dir);
    let pki = common::certs::client_pki(&dir);
    let (cert, key) = (server.cert.to_str().unwrap(), server.key.to_str().unwrap());
    let running = Running::start(&[
        "--bind",
        "127.0.0.1:0",
        "--tls-bind",
        "127.0.0.1:0",
        "--tls-bind",
        "[::1]:0",
        "--certfile",
        cert,
        "--keyfile",
        key,
        "--ca-certs",
        pki.ca.to_str().unwrap(),
        "--cert-reqs",
        "2",
        "--no-signals",
    ]);
    assert_eq!(running.tls, [false, true, true], "{:?}", running.addrs);
    assert!(running.addrs[2].is_ipv6());
    let resp = Conn::new(common::connect(running.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200, "the plain interface");
    drop(running);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_tls_flags_are_a_one_line_error() {
    let dir = common::certs::scratch_dir("cli-tls-errors");
    let server = common::certs::self_signed(&dir);
    let other = common::certs::client_pki(&dir);
    let (cert, key) = (server.cert.to_str().unwrap(), server.key.to_str().unwrap());
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let tls = ["--tls-bind", "127.0.0.1:0"];
    let table: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tls-bind", "127.0.0.1:0"], "--certfile"),
        (
            vec!["--tls-bind", "127.0.0.1:0", "--certfile", cert],
            "--keyfile",
        ),
        (vec!["--certfile", cert, "--keyfile", key], "--tls-bind"),
        (vec!["--ca-certs", cert], "--tls-bind"),
        (
            [&tls[..], &["--certfile", missing, "--keyfile", key]].concat(),
            missing,
        ),
        (
            [&tls[..], &["--certfile", cert, "--keyfile", missing]].concat(),
            missing,
        ),
        (
            [&tls[..], &["--certfile", key, "--keyfile", key]].concat(),
            key,
        ),
        (
            [
                &tls[..],
                &[
                    "--certfile",
                    cert,
                    "--keyfile",
                    other.client.key.to_str().unwrap(),
                ],
            ]
            .concat(),
            "does not match",
        ),
        (
            [
                &tls[..],
                &[
                    "--certfile",
                    cert,
                    "--keyfile",
                    key,
                    "--cert-reqs",
                    "optional",
                ],
            ]
            .concat(),
            "ca_certs",
        ),
        (
            [
                &tls[..],
                &["--certfile", cert, "--keyfile", key, "--cert-reqs", "maybe"],
            ]
            .concat(),
            "maybe",
        ),
        (
            [
                &tls[..],
                &["--certfile", cert, "--keyfile", key, "--ca-certs", missing],
            ]
            .concat(),
            missing,
        ),
    ];
    for (args, named) in table {
        let out = run_to_end(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} names {named}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
