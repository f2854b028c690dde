//! systemd integration: the listening sockets of socket activation (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`, see sd_listen_fds(3)) and the service manager's state
//! notifications (`NOTIFY_SOCKET`, see sd_notify(3)).
//!
//! Both are taken from the environment once, at the start of the process while it has one
//! thread, and the variables are removed so that the application's subprocesses do not
//! inherit them.

use std::env;
use std::fmt;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::tls::tickets;

/// The variables of socket activation.
const LISTEN_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Set by a master (`--workers`) for its children: how many listening sockets they inherit
/// at descriptors 3, 4, ... It is `LISTEN_FDS` without `LISTEN_PID`, which the master cannot
/// know before the child exists.
pub(crate) const CHILD_FDS: &str = "SKYROCKET_LISTEN_FDS";

/// Set by a master with [`CHILD_FDS`]: the sockets' names, `:`-separated, as
/// `LISTEN_FDNAMES` gives them: [`TLS_NAME`] for a TLS interface, `master` for a plain one.
pub(crate) const CHILD_FDNAMES: &str = "SKYROCKET_LISTEN_FDNAMES";

/// Set by a master with TLS interfaces for its children: the descriptor (after the
/// sockets) to read the session tickets' keys from, once (see `tls::tickets`).
pub(crate) const CHILD_TICKET_KEYS: &str = "SKYROCKET_TICKET_KEYS_FD";

/// The name of a passed socket that is a TLS interface (a master's, or a socket unit's
/// `FileDescriptorName=tls`): it serves TLS with `--certfile` and `--keyfile`.
pub(crate) const TLS_NAME: &str = "tls";

/// What a master puts before the names of a sibling's sockets (`standby-master`,
/// `standby-tls`): sockets of a `SO_REUSEPORT` group that another worker process owns, taken
/// from only when their owner leaves a connection waiting (see `master`).
pub(crate) const STANDBY_PREFIX: &str = "standby-";

/// In a child of a master, turns [`CHILD_FDS`] into socket activation's variables for this
/// process (while it has a single thread).
fn adopt_master_sockets() {
    let Some(count) = env::var_os(CHILD_FDS) else {
        return;
    };
    env::remove_var(CHILD_FDS);
    let names = match env::var(CHILD_FDNAMES) {
        Ok(names) => names,
        Err(_) => {
            vec!["master"; count.to_str().and_then(|n| n.parse().ok()).unwrap_or(0)].join(":")
        }
    };
    env::remove_var(CHILD_FDNAMES);
    env::set_var("LISTEN_FDNAMES", names);
    env::set_var("LISTEN_PID", std::process::id().to_string());
    env::set_var("LISTEN_FDS", count);
}

/// In a child of a master with TLS interfaces, takes the session tickets' keys it passed
/// (while the process has a single thread, before any TLS interface is configured).
pub(crate) fn take_ticket_keys() -> Result<(), String> {
    let Some(fd) = env::var_os(CHILD_TICKET_KEYS) else {
        return Ok(());
    };
    env::remove_var(CHILD_TICKET_KEYS);
    let fd: RawFd = (fd.to_str().and_then(|fd| fd.parse().ok()))
        .ok_or_else(|| format!("{CHILD_TICKET_KEYS}={fd:?} is not a descriptor"))?;
    let mut link = [0u8; tickets::LINK_LEN];
    // SAFETY: the master opened this descriptor for this process alone, which reads it here
    // once and closes it; nothing else in the process knows of it.
    let mut keys = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    keys.read_exact(&mut link)
        .map_err(|e| format!("cannot read the master's session ticket keys: {e}"))?;
    tickets::adopt(&link).map_err(|e| e.to_string())
}

/// The watchdog's variables (sd_watchdog_enabled(3)).
const WATCHDOG_VARS: [&str; 2] = ["WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where the service manager listens for state changes.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A listening socket passed by the service manager.
#[derive(Debug)]
pub(crate) struct PassedSocket {
    /// The socket: a listening TCP stream socket, close-on-exec (the server makes the
    /// sockets it serves non-blocking).
    pub(crate) socket: TcpListener,
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`), for the log.
    pub(crate) name: String,
}

impl PassedSocket {
    /// Whether it is another worker process's socket, served on standby.
    pub(crate) fn standby(&self) -> bool {
        self.name.starts_with(STANDBY_PREFIX)
    }

    /// Whether it is a TLS interface: named [`TLS_NAME`] (with or without
    /// [`STANDBY_PREFIX`]).
    pub(crate) fn tls(&self) -> bool {
        self.name.strip_prefix(STANDBY_PREFIX).unwrap_or(&self.name) == TLS_NAME
    }
}

/// Why a passed descriptor cannot be served.
#[derive(Debug)]
pub(crate) struct ActivationError {
    /// The descriptor, if the fault is one descriptor's.
    fd: Option<RawFd>,
    /// What is wrong.
    why: String,
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fd {
            Some(fd) => write!(f, "socket activation: fd {fd}: {}", self.why),
            None => write!(f, "socket activation: {}", self.why),
        }
    }
}

/// The sockets systemd passed to this process (none if `LISTEN_PID` is not our pid), each
/// checked to be a listening TCP socket; the `LISTEN_*` variables are removed.
///
/// Must be called while the process has a single thread (it changes the environment).
pub(crate) fn take_listen_fds() -> Result<Vec<PassedSocket>, ActivationError> {
    adopt_master_sockets();
    let passed = sd_notify::listen_fds_with_names();
    for var in LISTEN_VARS {
        env::remove_var(var);
    }
    let passed = passed.map_err(|e| ActivationError {
        fd: None,
        why: e.to_string(),
    })?;
    passed
        .map(|(fd, name)| {
            let fail = |why: String| ActivationError { fd: Some(fd), why };
            check_fd(fd)
                .map(|socket| PassedSocket { socket, name })
                .map_err(fail)
        })
        .collect()
}

/// Takes `fd` (made close-on-exec by `listen_fds_with_names`) if it is a listening TCP
/// socket.
fn check_fd(fd: RawFd) -> Result<TcpListener, String> {
    rustix::io::fcntl_getfd(
        // SAFETY: the borrow lasts for this call only; an fd that is not open gives EBADF.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .map_err(|e| format!("not open: {e}"))?;
    // SAFETY: the fd is open, and by the protocol it is this process's to own; nothing else
    // takes it, since the LISTEN_* variables are removed before it is taken.
    let socket = Socket::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let not_socket = |e: io::Error| format!("not a socket: {e}");
    let domain = socket.domain().map_err(not_socket)?;
    let kind = socket.r#type().map_err(not_socket)?;
    if !(domain == Domain::IPV4 || domain == Domain::IPV6) || kind != Type::STREAM {
        return Err("not a TCP stream socket (ListenStream=IP:PORT is needed)".into());
    }
    if !socket.is_listener().map_err(not_socket)? {
        return Err("not a listening socket".into());
    }
    Ok(socket.into())
}

/// Sends state changes to the service manager, when `NOTIFY_SOCKET` was set.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    /// The service manager's datagram socket (a path, or an abstract name for `@…`).
    addr: SocketAddr,
    /// How often to tell the service manager that the process is alive: half its watchdog
    /// interval (`WatchdogSec=`, passed as `WATCHDOG_USEC`); `None` without a watchdog.
    watchdog: Option<Duration>,
}

/// A state change the service manager is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Listening and serving (after start-up, and after a restart).
    Ready,
    /// A restart began.
    Reloading,
    /// A stop began.
    Stopping,
    /// Still alive (the watchdog's keep-alive ping).
    Alive,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if set, with the watchdog `WATCHDOG_USEC` asks
    /// for (if `WATCHDOG_PID` is unset or this process); the variables are removed.
    ///
    /// Must be called while the process has a single thread (it changes the environment).
    pub(crate) fn take_from_env() -> Result<Option<Notifier>, String> {
        let watchdog = sd_notify::watchdog_enabled().map(|interval| interval / 2);
        for var in WATCHDOG_VARS {
            env::remove_var(var);
        }
        let Some(text) = env::var_os(NOTIFY_SOCKET) else {
            return Ok(None);
        };
        env::remove_var(NOTIFY_SOCKET);
        let bytes = text.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(&text),
        };
        addr.map(|addr| Some(Notifier { addr, watchdog }))
            .map_err(|e| format!("NOTIFY_SOCKET {}: {e}", text.display()))
    }

    /// How often the service manager wants to hear [`State::Alive`], if it watches.
    pub(crate) fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|period| !period.is_zero())
    }

    /// Tells the service manager; a failure is logged (serving goes on without it).
    pub(crate) fn notify(&self, state: State) {
        if let Err(e) = self.send(&message(state)) {
            log::warn!("cannot notify the service manager ({state:?}): {e}");
        }
    }

    /// Sends one datagram of sd_notify lines.
    pub(crate) fn send(&self, message: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(message.as_bytes(), &self.addr)?;
        Ok(())
    }
}

/// The datagram for `state`; a reload carries the time it began, as systemd 253 wants.
fn message(state: State) -> String {
    match state {
        State::Ready => "READY=1\n".into(),
        State::Reloading => {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
            format!("RELOADING=1\nMONOTONIC_USEC={usec}\n")
        }
        State::Stopping => "STOPPING=1\n".into(),
        State::Alive => "WATCHDOG=1\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_sd_notify() {
        assert_eq!(message(State::Ready), "READY=1\n");
        assert_eq!(message(State::Stopping), "STOPPING=1\n");
        assert_eq!(message(State::Alive), "WATCHDOG=1\n");
        let reloading = message(State::Reloading);
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .expect(&reloading);
        assert!(usec.parse::<u64>().unwrap() > 0, "{reloading}");
    }
}
