//! The `skyrocket` binary run as a user would: a running process killed on drop, or a run to
//! its end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_skyrocket");

/// A running binary, killed and reaped on drop.
pub struct Running {
    /// The process.
    pub child: Child,
    /// The addresses of its "Listening on sockets" line.
    pub addrs: Vec<SocketAddr>,
    /// Which of them are TLS sockets (marked `*` in that line), in the same order.
    pub tls: Vec<bool>,
    /// Its stderr lines before the start-up line.
    pub startup: Vec<String>,
    /// Its stderr lines after the start-up line.
    lines: mpsc::Receiver<String>,
    /// Its stdout lines, if they are captured (else stdout is discarded).
    out_lines: Option<mpsc::Receiver<String>>,
}

impl Running {
    /// Starts the binary with `args` and waits for its start-up line.
    pub fn start(args: &[&str]) -> Running {
        Running::start_with(args, "info", &[])
    }

    /// The same, with these `RUST_LOG` rules.
    pub fn start_with_log(args: &[&str], rust_log: &str) -> Running {
        Running::start_with(args, rust_log, &[])
    }

    /// The same, with these `RUST_LOG` rules and environment variables.
    pub fn start_with(args: &[&str], rust_log: &str, envs: &[(&str, &str)]) -> Running {
        Running::spawn(args, rust_log, envs, false)
    }

    /// The same as [`Running::start`], with stdout captured (see [`Running::stdout_line`]).
    pub fn start_capturing_stdout(args: &[&str]) -> Running {
        Running::spawn(args, "info", &[], true)
    }

    fn spawn(
        args: &[&str],
        rust_log: &str,
        envs: &[(&str, &str)],
        capture_stdout: bool,
    ) -> Running {
        let stdout = match capture_stdout {
            true => Stdio::piped(),
            false => Stdio::null(),
        };
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("RUST_LOG", rust_log)
            .envs(envs.iter().copied())
            .stdout(stdout);
        Running::from_command(command)
    }

    /// Starts `command` (stdin null, stderr piped) and waits for its start-up line.
    pub fn from_command(mut command: Command) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start skyrocket");
        let out_lines = child.stdout.take().map(line_reader);
        let (line, startup, lines) = listening_line(&mut child);
        let list = line
            .split("Listening on sockets: ")
            .nth(1)
            .expect("addresses");
        let (addrs, tls) = list
            .split(", ")
            .map(|a| {
                let (addr, tls) = match a.trim().strip_suffix('*') {
                    Some(addr) => (addr, true),
                    None => (a.trim(), false),
                };
                (addr.parse::<SocketAddr>().expect(a), tls)
            })
            .unzip();
        Running {
            child,
            addrs,
            tls,
            startup,
            lines,
            out_lines,
        }
    }

    /// The next stdout line (within 20 s), if stdout is captured.
    pub fn stdout_line(&self) -> String {
        let out = self.out_lines.as_ref().expect("stdout is captured");
        out.recv_timeout(Duration::from_secs(20))
            .expect("a stdout line within 20 s")
    }

    /// Sends a signal with the system's `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (up to 20 s) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit"
            );
            std::thread::yield_now();
        }
    }

    /// The next stderr line containing `needle` (within 20 s).
    pub fn line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a child's stderr on a thread, to its end (so that the child never blocks on a full
/// pipe, and waits for a line can have timeouts); the lines come through the receiver.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    line_reader(child.stderr.take().expect("piped stderr"))
}

/// Reads `pipe` on a thread, to its end; its lines come through the receiver.
fn line_reader(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for the start-up line; later lines keep coming through the receiver.
/// The stderr lines before it come first.
fn listening_line(child: &mut Child) -> (String, Vec<String>, mpsc::Receiver<String>) {
    let rx = stderr_lines(child);
    let mut before = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the start-up line within 20 s");
        if line.contains("Listening on sockets:") {
            return (line, before, rx);
        }
        before.push(line);
    }
}

/// The binary with `args`, run as systemd's socket activation does: `fd` becomes fd 3,
/// `LISTEN_FDS=1`, `LISTEN_FDNAMES=name`, and `LISTEN_PID` the binary's pid (a shell sets it
/// to its own pid, `$$`, then execs the binary in its place, keeping fd 3).
pub fn socket_activated(fd: RawFd, name: &str, args: &[&str]) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, BIN])
        .args(args)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", name)
        .stdout(Stdio::null());
    // SAFETY: between fork and exec the hook only calls dup2 and fcntl, which are
    // async-signal-safe, on a descriptor the parent keeps open.
    unsafe {
        command.pre_exec(move || {
            let done = match fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0),
                _ => libc::dup2(fd, 3),
            };
            match done {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    command
}

/// Runs the binary with `args` until it exits on its own (within 20 s).
pub fn run_to_end(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    run_command_to_end(command)
}

/// Runs `command` until it exits on its own (within 20 s).
pub fn run_command_to_end(mut command: Command) -> Output {
    let child = command
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
    let output = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            // Killed, so that a failing test leaves no server behind.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("skyrocket (pid {pid}) should exit on its own")
        });
    output.expect("output")
}
