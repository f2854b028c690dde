//! Parks idle keep-alive connections on a server, for `examples/bench_idle.sh`.
//!
//! `idle_clients ADDR N` opens `N` connections to `ADDR`, sends one
//! `GET /hello` on each and reads its whole response, so every connection has
//! been served once and now sits idle in keep-alive. It then prints `ready N`
//! and holds the connections until its stdin closes (or it is killed).
//!
//! Connections are opened in waves of [`WAVE`] so the listen backlog is not
//! overrun, and every socket has connect, read and write timeouts.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Connections connected and served at a time.
const WAVE: usize = 200;
/// Connect, read and write timeout of every socket.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The request sent once on each connection.
const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(addr), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<usize>())) else {
        eprintln!("usage: idle_clients ADDR N");
        return ExitCode::from(2);
    };
    match run(addr, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_clients: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens and serves `n` connections, reports `ready n`, then waits for stdin EOF.
fn run(addr: &str, n: usize) -> io::Result<()> {
    raise_nofile(n as u64 + 64)?;
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{addr}: no address")))?;
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let wave = WAVE.min(n - held.len());
        let mut streams = (0..wave)
            .map(|_| connect(addr))
            .collect::<io::Result<Vec<_>>>()?;
        for s in &mut streams {
            s.write_all(REQUEST)?;
        }
        for s in &mut streams {
            read_response(s)?;
        }
        held.append(&mut streams);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "ready {}", held.len())?;
    out.flush()?;
    // Hold the connections until whoever started us closes our stdin.
    let mut sink = Vec::new();
    while io::stdin().lock().read_until(b'\n', &mut sink)? > 0 {
        sink.clear();
    }
    Ok(())
}

/// One connection with every timeout set.
fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one `200` response whose body is framed by `Content-Length` and fails
/// if the server means to close the connection (it would not stay idle).
fn read_response(s: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk)? {
            0 => return Err(io::Error::other("connection closed before a response")),
            k => buf.extend_from_slice(&chunk[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") || head.contains("\r\nconnection: close") {
        let line = head.lines().next().unwrap_or_default();
        return Err(io::Error::other(format!("not a keep-alive 200: {line}")));
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| io::Error::other("response without Content-Length"))?;
    let mut rest = (head_end + length).saturating_sub(buf.len());
    while rest > 0 {
        match s.read(&mut chunk[..rest.min(512)])? {
            0 => return Err(io::Error::other("connection closed in a body")),
            k => rest -= k,
        }
    }
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to `want`, or to the hard limit if that is lower.
fn raise_nofile(want: u64) -> io::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|current| current >= want) {
        return Ok(());
    }
    limit.current = Some(limit.maximum.map_or(want, |max| max.min(want)));
    setrlimit(Resource::Nofile, limit).map_err(io::Error::from)
}
