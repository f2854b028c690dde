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
    served_on(common::connect(addr))
}

/// The process that served a request on `stream`.
fn served_on(stream: TcpStream) -> u32 {
    let text = Conn::new(stream).request(&get("/")).text();
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
    signal(killed, "KILL");
    server.line_with(&format!("worker process {killed} replaced"));
    let mut replaced = false;
    wait_until("a new process serves", || {
        let pid = served_by(addr);
        assert_ne!(pid, killed);
        replaced |= !first.contains(&pid);
        replaced
    });
}

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
    assert!(status.unwrap().success());
}

#[test]
fn a_burst_of_new_connections_is_spread_over_the_children() {
    // A shared socket goes to whichever child wakes first: often a whole burst to one, which
    // leaves a GIL-bound application one core. Each child owns a socket of a SO_REUSEPORT
    // group instead, and the kernel spreads connections over the group (by their addresses,
    // so fewer than 4 of 32 on one child has a chance of about 1 in 400,000). On a loaded
    // machine a child may not run for the default 5 ms, and the other then takes its
    // connections on standby: a long --standby-delay keeps this test to the kernel's share.
    let server = Running::start(&[&TWO_WORKERS[..], &["--standby-delay", "2"]].concat());
    let addr = server.addrs[0];
    let told = server.line_with("serving the master's sockets: ");
    assert!(told.contains(&format!("standby-master ({addr})")), "{told}");
    processes_serving(addr, 2);
    for _ in 0..2 {
        let burst: Vec<TcpStream> = (0..32).map(|_| common::connect(addr)).collect();
        let mut served = std::collections::HashMap::new();
        for stream in burst {
            *served.entry(served_on(stream)).or_insert(0) += 1;
        }
        assert_eq!(served.len(), 2, "{served:?}");
        assert!(served.values().all(|&n| n >= 4), "{served:?}");
    }
}

#[test]
fn new_connections_meant_for_a_stopped_child_are_served_by_another() {
    // About half the new connections land on the stopped child's socket of the group; the
    // other child takes them on standby once they have waited a few milliseconds.
    let server = Running::start(&TWO_WORKERS);
    let addr = server.addrs[0];
    let children = processes_serving(addr, 2);
    let mut children = children.into_iter();
    let (stopped, serving) = (children.next().unwrap(), children.next().unwrap());
    signal(stopped, "STOP");
    let served: Vec<u32> = (0..16).map(|_| served_by(addr)).collect();
    signal(stopped, "CONT");
    assert!(served.iter().all(|&pid| pid == serving), "{served:?}");
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
fn max_requests_stops_at_once_after_the_last_response() {
    // One keep-alive client asking without pause: the worker that sends the 20th response
    // starts the drain before it reads the next request, which is answered with
    // `Connection: close`; a periodic check would let many more through.
    let mut server = Running::start(&["--bind", "127.0.0.1:0", "--max-requests", "20"]);
    let mut conn = Conn::new(common::connect(server.addrs[0]));
    let mut answered = 0;
    while conn.stream.write_all(&get("/")).is_ok() {
        let Ok(resp) = conn.try_response(false) else {
            break;
        };
        answered += 1;
        if resp.header("connection") == Some("close") {
            break;
        }
    }
    assert_eq!(answered, 21, "20, then one with Connection: close");
    assert!(server.wait_exit().success());
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

#[test]
fn sighup_starts_new_children_then_stops_the_old_ones() {
    let server = Running::start(&TWO_WORKERS);
    let addr = server.addrs[0];
    let old = processes_serving(addr, 2);
    server.signal("HUP");
    server.line_with("reload done: 2 new worker processes serve, 2 old ones stop");
    for pid in &old {
        wait_until(&format!("old worker process {pid} exits"), || gone(*pid));
    }
    let new = processes_serving(addr, 2);
    assert!(new.is_disjoint(&old), "{new:?} are new, not {old:?}");
}

/// The scrape of a master's metrics endpoint, whose address its start-up lines name.
fn scrape(server: &Running) -> String {
    let line = (server.startup.iter())
        .find_map(|line| line.split("metrics on http://").nth(1))
        .expect("the metrics line");
    let addr: SocketAddr = line.trim_end_matches("/metrics").parse().unwrap();
    let resp = Conn::new(common::connect(addr)).request(&get("/metrics"));
    assert_eq!(resp.status, 200);
    resp.text()
}

#[test]
fn the_master_serves_every_childs_counters_labelled_with_its_pid() {
    let args = [&TWO_WORKERS[..], &["--metrics", "127.0.0.1:0"]].concat();
    let server = Running::start(&args);
    let children = processes_serving(server.addrs[0], 2);
    wait_until("both children report", || {
        let text = scrape(&server);
        (children.iter()).all(|pid| text.contains(&format!("skyrocket_up{{pid=\"{pid}\"}} 1\n")))
    });
    let text = scrape(&server);
    for pid in &children {
        let served = format!("skyrocket_requests_total{{pid=\"{pid}\"}} ");
        assert!(text.contains(&served), "{served}:\n{text}");
        assert!(
            text.contains(&format!("skyrocket_stuck{{pid=\"{pid}\"}} 0\n")),
            "{text}"
        );
    }
}

#[test]
fn a_silent_child_is_reported_stuck_then_replaced_and_killed() {
    let timeouts = [
        "--stuck-after",
        "0.3",
        "--worker-timeout",
        "0.6",
        "--shutdown-timeout",
        "0.1",
    ];
    let server = Running::start(&[&TWO_WORKERS[..], &timeouts].concat());
    let children = processes_serving(server.addrs[0], 2);
    let frozen = *children.iter().next().unwrap();
    signal(frozen, "STOP");
    server.line_with(&format!("worker process {frozen} is stuck: silent for"));
    server.line_with(&format!(
        "worker process {frozen} stuck past --worker-timeout: replaced"
    ));
    server.line_with(&format!(
        "worker process {frozen} did not stop in time; killed"
    ));
    wait_until("the frozen child is gone", || gone(frozen));
    let now = processes_serving(server.addrs[0], 2);
    assert!(!now.contains(&frozen), "{now:?}");
}

/// A Python application in a directory of its own, rewritten by the test.
#[cfg(feature = "python")]
mod reload {
    use std::io::Write;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use super::*;

    /// A directory holding `reloaded.py`, removed on drop.
    struct AppDir(PathBuf);

    impl AppDir {
        fn new(name: &str) -> AppDir {
            let dir = std::env::temp_dir().join(format!("skyrocket-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            AppDir(dir)
        }

        /// Writes an application that answers `version`, or `source` as given.
        fn write(&self, source: &str) {
            std::fs::write(self.0.join("reloaded.py"), source).unwrap();
        }

        fn answering(&self, version: &str) {
            self.write(&format!(
                "import os\n\
                 def app(environ, start_response):\n    \
                 start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
                 return [b'{version} (process %d)' % os.getpid()]\n"
            ));
        }

        fn start(&self) -> Running {
            self.start_with(&[])
        }

        fn start_with(&self, more: &[&str]) -> Running {
            let dir = self.0.to_str().unwrap();
            let app = ["--app", "reloaded:app", "--pythonpath", dir];
            let args = [&TWO_WORKERS[..], &app, more].concat();
            Running::start_with(&args, "info", &[("PYTHONDONTWRITEBYTECODE", "1")])
        }
    }

    impl Drop for AppDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What a client asking without pause saw.
    #[derive(Default)]
    struct Tally {
        /// The bodies, in order.
        answers: Vec<String>,
        /// Requests sent that got no response.
        failures: Vec<String>,
    }

    /// A client that sends requests back to back on keep-alive connections (a new one when a
    /// response says `Connection: close`, or fails) until `stop`.
    fn keep_asking(
        addr: SocketAddr,
        tally: Arc<Mutex<Tally>>,
        stop: Arc<AtomicBool>,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut conn = Conn::new(common::connect(addr));
                loop {
                    let answer = ask(&mut conn);
                    let mut tally = tally.lock().unwrap();
                    let closes = match answer {
                        Ok((text, closes)) => {
                            tally.answers.push(text);
                            closes
                        }
                        Err(failure) => {
                            tally.failures.push(failure);
                            true
                        }
                    };
                    if closes || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        })
    }

    /// One request: the version its 200 names, and whether the connection closes after it.
    fn ask(conn: &mut Conn) -> Result<(String, bool), String> {
        let sent = conn.stream.write_all(&get("/"));
        let resp = sent.and_then(|()| conn.try_response(false));
        let resp = resp.map_err(|e| e.to_string())?;
        match resp.status {
            200 => {
                let text = resp.text();
                let version = text.split(' ').next().unwrap_or_default().to_owned();
                Ok((version, resp.header("connection") == Some("close")))
            }
            status => Err(format!("status {status}")),
        }
    }

    /// Runs two clients asking without pause while `during` runs; what they saw.
    fn asking_while(addr: SocketAddr, during: impl FnOnce(&Mutex<Tally>)) -> Tally {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..2)
            .map(|_| keep_asking(addr, tally.clone(), stop.clone()))
            .collect();
        during(&tally);
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().for_each(|c| c.join().unwrap());
        Arc::into_inner(tally).unwrap().into_inner().unwrap()
    }

    /// Waits until the clients got `count` answers `text` after those they had.
    fn answered(tally: &Mutex<Tally>, text: &str, count: usize) {
        let before = tally.lock().unwrap().answers.len();
        wait_until(&format!("{count} answers {text:?}"), || {
            let tally = tally.lock().unwrap();
            tally.answers[before..]
                .iter()
                .filter(|a| *a == text)
                .count()
                >= count
        });
    }

    /// Two worker processes serving `v1` from a directory named after `name`; their ids.
    fn serving_v1(name: &str) -> (AppDir, Running, HashSet<u32>) {
        let app = AppDir::new(name);
        app.answering("v1");
        let server = app.start();
        let serving = processes_serving(server.addrs[0], 2);
        (app, server, serving)
    }

    #[test]
    fn sighup_serves_the_changed_module_with_no_request_failed() {
        let (app, server, old) = serving_v1("reload");
        let tally = asking_while(server.addrs[0], |tally| {
            answered(tally, "v1", 20);
            app.answering("v2");
            server.signal("HUP");
            server.line_with("reload done");
            for pid in &old {
                wait_until(&format!("old worker process {pid} exits"), || gone(*pid));
            }
            answered(tally, "v2", 20);
        });
        assert_eq!(tally.failures, Vec::<String>::new(), "requests failed");
        assert_eq!(tally.answers.last().map(String::as_str), Some("v2"));
    }

    #[test]
    fn a_reload_whose_children_cannot_start_leaves_the_old_ones_serving() {
        let (app, server, old) = serving_v1("broken-reload");
        let tally = asking_while(server.addrs[0], |tally| {
            app.write("def app(:\n");
            server.signal("HUP");
            server.line_with("reload failed");
            answered(tally, "v1", 20);
        });
        assert_eq!(tally.failures, Vec::<String>::new(), "requests failed");
        assert!(tally.answers.iter().all(|a| a == "v1"));
        assert_eq!(processes_serving(server.addrs[0], 2), old);
    }

    #[test]
    fn a_request_stuck_in_the_application_is_reported_until_it_ends() {
        let app = AppDir::new("stuck");
        app.write(
            "import os, time\n\
             def app(environ, start_response):\n    \
             if environ['PATH_INFO'] == '/stuck':\n        \
             time.sleep(1.5)\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [b'v1 (process %d)' % os.getpid()]\n",
        );
        let server = app.start_with(&["--stuck-after", "0.5"]);
        let addr = server.addrs[0];
        processes_serving(addr, 2);
        let stuck =
            std::thread::spawn(move || Conn::new(common::connect(addr)).request(&get("/stuck")));
        let line = server.line_with("is stuck: a request has run for");
        server.line_with("is no longer stuck");
        assert_eq!(stuck.join().unwrap().status, 200, "{line}");
    }
}
