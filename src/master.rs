//! The Master actor (`--workers N`): binds the interfaces once and runs N child processes
//! that serve them, as gunicorn's arbiter does. Each child is today's single-process server,
//! started from the same executable and arguments; it inherits the listening sockets the way
//! systemd's socket activation passes them (descriptors 3, 4, ...), so the kernel spreads
//! connections between the children and no balancer runs in between: each interface is a
//! `SO_REUSEPORT` group with a socket per child (see [`group`]).
//!
//! The master supervises: a child that exits while the master runs is replaced, after a
//! backoff that grows while children die at start (a broken application must not make the
//! master spin). Each child tells the master when it serves the way it would tell systemd:
//! `READY=1` on a datagram socket of the master's own (`NOTIFY_SOCKET`, one per child).
//!
//! Signals: SIGTERM and SIGINT stop every child gracefully, then the master. SIGHUP rolls the
//! children over: a new *generation* of N children starts and imports the application afresh
//! (new code takes effect); once every one of them is ready, the old ones stop gracefully.
//! A new child that exits before it is ready (or is not ready within [`READY_TIMEOUT`]) ends
//! the reload: the new ones stop and the old ones go on serving. SIGUSR1 is passed on (each
//! child restarts in place and reopens its access log). A child dies with its master
//! (`PR_SET_PDEATHSIG`), so a killed master leaves no server behind.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rustix::process::{kill_process, Pid, Signal};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::metrics::{Collect, Metrics, Sample};
use crate::server::ServerError;
use crate::server::HEARTBEAT;
use crate::signals::{self, Received};
use crate::stats::StatusReport;
use crate::systemd::{
    Notifier, State, CHILD_FDNAMES, CHILD_FDS, CHILD_TICKET_KEYS, NOTIFY_SOCKET, STANDBY_PREFIX,
    TLS_NAME,
};
use crate::tls::tickets;

/// Lowest descriptor the master keeps its sockets at, so that moving them to 3, 4, ... in a
/// new child never overwrites one not moved yet.
const HIGH_FD: i32 = 100;

/// The first wait before replacing a child that died at start; it doubles up to
/// [`MAX_BACKOFF`] while children keep dying within [`STABLE_AFTER`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait before replacing a child.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A child that lived this long did not die "at start": the backoff starts again.
const STABLE_AFTER: Duration = Duration::from_secs(2);

/// How long the children of a reload may take to be ready before the reload is given up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A child that has not reported for this long (four heartbeats) is silent.
const SILENT_AFTER: Duration = Duration::from_secs(1);

/// What the master is to do and watch for, from the command line.
pub(crate) struct Supervision {
    /// How many children serve (`--workers`).
    pub(crate) workers: usize,
    /// A child with a request in the application this long, or silent this long, is
    /// reported stuck (`--stuck-after`).
    pub(crate) stuck_after: Duration,
    /// A child stuck this long is replaced (`--worker-timeout`; `None`: never).
    pub(crate) worker_timeout: Option<Duration>,
    /// How long a child told to stop may take before it is killed: its graceful stop's own
    /// deadline (`--shutdown-timeout`) and a margin.
    pub(crate) kill_after: Duration,
    /// The metrics endpoint's socket (`--metrics`): the master serves its children's counters.
    pub(crate) metrics: Option<TcpListener>,
    /// How long a scrape may take to send its request (`--read-timeout`).
    pub(crate) read_timeout: Duration,
    /// The `Server` header value of the metrics endpoint.
    pub(crate) server_name: String,
    /// Which of the sockets are TLS interfaces: the children are told by the sockets' names.
    pub(crate) tls_sockets: Vec<bool>,
}

/// A running child.
struct ChildProcess {
    /// Which socket of each interface's group it owns (a replacement takes the same).
    slot: usize,
    /// When it started, for the backoff.
    started: Instant,
    /// The generation it belongs to: SIGHUP starts a new one.
    generation: u64,
    /// It said `READY=1`: its application is imported and it serves.
    ready: bool,
    /// Told to stop (an old generation, a failed reload's, a stuck one): not replaced when it
    /// exits.
    retiring: bool,
    /// Its last report of its counters (every [`HEARTBEAT`]).
    report: Option<StatusReport>,
    /// When it last reported (or started).
    heard: Instant,
    /// Reported stuck, until it reports a healthy state again.
    stuck: bool,
}

impl ChildProcess {
    /// How long it has been stuck: its oldest request in progress, or its silence (which
    /// counts from [`SILENT_AFTER`] on, so that a heartbeat late on a busy machine is not
    /// taken for a stuck process).
    fn stuck_for(&self) -> Duration {
        let silent = self.heard.elapsed();
        let longest = self.report.map_or(Duration::ZERO, |r| r.longest_request);
        match (longest.is_zero(), silent >= SILENT_AFTER) {
            (false, _) => longest + silent,
            (true, true) => silent,
            (true, false) => Duration::ZERO,
        }
    }
}

/// Runs the children and keeps their number.
pub(crate) struct Master {
    /// The listening sockets, kept at [`HIGH_FD`] and above: one group per interface (see
    /// [`group`]).
    sockets: Vec<Vec<OwnedFd>>,
    /// The executable and arguments a child runs.
    program: (OsString, Vec<OsString>),
    /// What to run and watch for.
    supervision: Supervision,
    /// The running children, by process id.
    children: HashMap<u32, ChildProcess>,
    /// The generation that serves; its children are kept at `workers`.
    generation: u64,
    /// The generation a reload is starting, until all its children are ready.
    reloading: Option<u64>,
    /// Told systemd `READY=1` once the first generation was ready.
    announced: bool,
    /// Children started so far: names each child's notification socket.
    spawned: u64,
    /// The wait before the next replacement of a child that died at start.
    backoff: Duration,
    /// Stopping: exited children are not replaced, and the master stops with the last.
    stopping: bool,
    /// Tells systemd that the service is up, reloading and stopping (`NOTIFY_SOCKET`).
    notifier: Option<Notifier>,
}

/// Stop every child gracefully, then the master.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopAll;

/// Start a new generation of children; stop the old one once the new one serves.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reload;

/// Pass a signal on to every child.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forward(pub(crate) Signal);

/// A child said `READY=1`.
#[derive(Message)]
#[rtype(result = "()")]
struct ChildReady(u32);

/// A child reported its counters.
#[derive(Message)]
#[rtype(result = "()")]
struct ChildStatus(u32, StatusReport);

/// A child exited.
#[derive(Message)]
#[rtype(result = "()")]
struct ChildExited {
    /// Its process id.
    pid: u32,
    /// How it ended.
    status: io::Result<ExitStatus>,
}

impl Master {
    /// A master running `workers` children of `program` on `sockets` (a group per
    /// interface).
    pub(crate) fn new(
        sockets: &[Vec<TcpListener>],
        program: (OsString, Vec<OsString>),
        supervision: Supervision,
        notifier: Option<Notifier>,
    ) -> io::Result<Master> {
        let high = |socket: &TcpListener| rustix::io::fcntl_dupfd_cloexec(socket, HIGH_FD);
        let sockets = (sockets.iter())
            .map(|group| group.iter().map(high).collect::<Result<_, _>>())
            .collect::<Result<_, _>>()?;
        Ok(Master {
            sockets,
            program,
            supervision,
            children: HashMap::new(),
            generation: 0,
            reloading: None,
            announced: false,
            spawned: 0,
            backoff: FIRST_BACKOFF,
            stopping: false,
            notifier,
        })
    }

    /// Starts a child of `generation` in `slot` and watches its notifications and its exit.
    fn spawn_child(&mut self, generation: u64, slot: usize, ctx: &mut actix::Context<Self>) {
        let spawned = self.notice_socket().and_then(|(notices, name)| {
            let child = self.command(&name, slot)?.spawn()?;
            Ok((child, notices))
        });
        let (child, notices) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                log::error!("cannot start a worker process: {e}");
                return self.replace_later(generation, slot, ctx);
            }
        };
        let pid = child.id().unwrap_or(0);
        log::info!("worker process {pid} started");
        let started = Instant::now();
        let child_process = ChildProcess {
            slot,
            started,
            generation,
            ready: false,
            retiring: false,
            report: None,
            heard: started,
            stuck: false,
        };
        self.children.insert(pid, child_process);
        ctx.spawn(watch_child(child, notices, ctx.address()).into_actor(self));
    }

    /// A datagram socket for the next child's notifications, with the abstract name the
    /// child is given in `NOTIFY_SOCKET`.
    fn notice_socket(&mut self) -> io::Result<(UnixDatagram, String)> {
        self.spawned += 1;
        let name = format!("skyrocket-master-{}-{}", std::process::id(), self.spawned);
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name)?;
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
        socket.set_nonblocking(true)?;
        Ok((UnixDatagram::from_std(socket)?, format!("@{name}")))
    }

    /// The command of the child in `slot`: this program, its descriptors 3, 4, ... the
    /// sockets (and after them, with TLS interfaces, the session tickets' keys to read), its
    /// notifications to `notify`.
    fn command(&self, notify: &str, slot: usize) -> io::Result<Command> {
        let (program, args) = &self.program;
        let mut fds: Vec<i32> = (self.sockets.iter().flatten())
            .map(|fd| fd.as_raw_fd())
            .collect();
        let sizes: Vec<usize> = self.sockets.iter().map(Vec::len).collect();
        let names = socket_names(&sizes, &self.supervision.tls_sockets, slot);
        let mut command = Command::new(program);
        command
            .args(args)
            .env(CHILD_FDS, fds.len().to_string())
            .env(CHILD_FDNAMES, names)
            .env(NOTIFY_SOCKET, notify)
            .kill_on_drop(true);
        let keys = match self.supervision.tls_sockets.contains(&true) {
            true => Some(ticket_keys()?),
            false => None,
        };
        if let Some(keys) = &keys {
            command.env(CHILD_TICKET_KEYS, (3 + fds.len()).to_string());
            fds.push(keys.as_raw_fd());
        }
        // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
        // (prctl, dup2) on descriptors the master owns and keeps open (`keys` lives as long
        // as the command), and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                let _kept_open = &keys;
                move_sockets(&fds)
            });
        }
        Ok(command)
    }

    /// Whether every child of `generation` that is not retiring is ready, and there are
    /// `workers` of them.
    fn all_ready(&self, generation: u64) -> bool {
        let members =
            || (self.children.values()).filter(|c| c.generation == generation && !c.retiring);
        members().count() == self.supervision.workers && members().all(|c| c.ready)
    }

    fn child_ready(&mut self, pid: u32, ctx: &mut actix::Context<Self>) {
        let Some(child) = self.children.get_mut(&pid) else {
            return;
        };
        if std::mem::replace(&mut child.ready, true) {
            return;
        }
        log::info!("worker process {pid} is ready");
        match self.reloading {
            Some(next) if self.all_ready(next) => self.finish_reload(next, ctx),
            Some(_) => {}
            None if !self.announced && self.all_ready(self.generation) => {
                self.announced = true;
                self.notify(State::Ready);
            }
            None => {}
        }
    }

    fn child_exited(
        &mut self,
        pid: u32,
        status: io::Result<ExitStatus>,
        ctx: &mut actix::Context<Self>,
    ) {
        let Some(child) = self.children.remove(&pid) else {
            return;
        };
        let finished = matches!(&status, Ok(status) if status.success());
        match &status {
            Ok(status) => log::info!("worker process {pid} exited ({status})"),
            Err(e) => log::warn!("worker process {pid}: cannot wait: {e}"),
        }
        if self.stopping {
            if self.children.is_empty() {
                log::info!("every worker process stopped");
                ctx.stop();
            }
            return;
        }
        if child.retiring {
            return;
        }
        if self.reloading == Some(child.generation) && !child.ready {
            let why = format!("worker process {pid} exited before it was ready");
            return self.fail_reload(&why, ctx);
        }
        if finished {
            log::info!("worker process {pid} finished (max_requests, or a stop); replaced");
            return self.spawn_child(child.generation, child.slot, ctx);
        }
        self.replace_failed(pid, &child, ctx);
    }

    /// Every child of the reload's generation is ready: the older ones stop gracefully.
    fn finish_reload(&mut self, next: u64, ctx: &mut actix::Context<Self>) {
        let old = self.retire(|_, child| child.generation != next, ctx);
        log::info!(
            "reload done: {} new worker processes serve, {old} old ones stop",
            self.supervision.workers
        );
        self.generation = next;
        self.reloading = None;
        self.notify(State::Ready);
    }

    /// The reload cannot finish: its children stop, the serving generation goes on.
    fn fail_reload(&mut self, why: &str, ctx: &mut actix::Context<Self>) {
        let Some(next) = self.reloading.take() else {
            return;
        };
        log::error!("reload failed: {why}; the running worker processes go on serving");
        self.retire(|_, child| child.generation == next, ctx);
        self.notify(State::Ready);
    }

    /// Sends SIGTERM to the children `pick` selects that are not retiring yet, marks them
    /// retiring, and kills any of them still running after `kill_after`; how many.
    fn retire(
        &mut self,
        pick: impl Fn(u32, &ChildProcess) -> bool,
        ctx: &mut actix::Context<Self>,
    ) -> usize {
        let mut retired = Vec::new();
        for (pid, child) in &mut self.children {
            if !child.retiring && pick(*pid, child) {
                child.retiring = true;
                signal_child(*pid, Signal::TERM);
                retired.push(*pid);
            }
        }
        let count = retired.len();
        ctx.run_later(self.supervision.kill_after, move |master, _| {
            for pid in retired
                .into_iter()
                .filter(|pid| master.children.contains_key(pid))
            {
                log::warn!("worker process {pid} did not stop in time; killed");
                signal_child(pid, Signal::KILL);
            }
        });
        count
    }

    /// Looks at every child's last report: one stuck past `stuck_after` is reported, and
    /// past `worker_timeout` replaced.
    fn check_children(&mut self, ctx: &mut actix::Context<Self>) {
        let (stuck_after, timeout) = (
            self.supervision.stuck_after,
            self.supervision.worker_timeout,
        );
        let mut replace = Vec::new();
        for (pid, child) in (self.children.iter_mut()).filter(|(_, c)| c.ready && !c.retiring) {
            let stuck_for = child.stuck_for();
            if stuck_for >= stuck_after && !child.stuck {
                log::warn!("worker process {pid} is stuck: {}", describe_stuck(child));
            } else if stuck_for < stuck_after && child.stuck {
                log::info!("worker process {pid} is no longer stuck");
            }
            child.stuck = stuck_for >= stuck_after;
            if timeout.is_some_and(|timeout| stuck_for >= timeout) {
                replace.push((*pid, child.generation, child.slot));
            }
        }
        for (pid, generation, slot) in replace {
            log::warn!("worker process {pid} stuck past --worker-timeout: replaced");
            self.retire(|other, _| other == pid, ctx);
            self.spawn_child(generation, slot, ctx);
        }
    }

    /// Replaces a child that failed, after a backoff that grows while children die at start.
    fn replace_failed(&mut self, pid: u32, child: &ChildProcess, ctx: &mut actix::Context<Self>) {
        match child.started.elapsed() >= STABLE_AFTER {
            true => self.backoff = FIRST_BACKOFF,
            false => self.backoff = (self.backoff * 2).min(MAX_BACKOFF),
        }
        log::warn!("worker process {pid} replaced in {:?}", self.backoff);
        self.replace_later(child.generation, child.slot, ctx);
    }

    /// Starts a child of `generation` in `slot` after the backoff, if that generation still
    /// serves or is being started by then.
    fn replace_later(&mut self, generation: u64, slot: usize, ctx: &mut actix::Context<Self>) {
        ctx.run_later(self.backoff, move |master, ctx| {
            let wanted = generation == master.generation || master.reloading == Some(generation);
            if !master.stopping && wanted {
                master.spawn_child(generation, slot, ctx);
            }
        });
    }

    /// Tells systemd, if it asked (`NOTIFY_SOCKET`).
    fn notify(&self, state: State) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(state);
        }
    }
}

/// One interface's socket as a `SO_REUSEPORT` group of `workers` sockets on its address, so
/// that the kernel spreads new connections evenly between the children, whatever their
/// threads' scheduling (a shared socket goes to whichever child wakes first, often all of
/// a burst to one). Sockets are added to the group the socket is in (`--reuse-port`, or
/// systemd's `ReusePort=yes`), or the group is bound afresh on its address if this process
/// bound it (`bound_here`). A passed socket in no group stays one socket for all children.
pub(crate) fn group(
    socket: TcpListener,
    workers: usize,
    backlog: u32,
    bound_here: bool,
) -> Result<Vec<TcpListener>, ServerError> {
    let in_group = socket2::SockRef::from(&socket)
        .reuse_port()
        .unwrap_or(false);
    if workers < 2 || !(in_group || bound_here) {
        return Ok(vec![socket]);
    }
    let addr = socket.local_addr().map_err(ServerError::Listener)?;
    let member = || crate::server::bind(addr, backlog, true);
    if !in_group {
        drop(socket);
        return (0..workers).map(|_| member()).collect();
    }
    let mut group = vec![socket];
    while group.len() < workers {
        match member() {
            Ok(socket) => group.push(socket),
            Err(e) => {
                // systemd made it as another user (a group takes one user's sockets only).
                log::warn!("{e}: the worker processes share one socket");
                group.truncate(1);
                break;
            }
        }
    }
    Ok(group)
}

/// The names of the sockets of groups of `sizes` (an interface each, TLS ones as `tls`
/// says), in their order, for the child in `slot`: as `LISTEN_FDNAMES` gives them,
/// [`TLS_NAME`] for a TLS interface and `master` for a plain one, with [`STANDBY_PREFIX`]
/// for the sockets of a group that another slot owns.
fn socket_names(sizes: &[usize], tls: &[bool], slot: usize) -> String {
    let mut names = Vec::new();
    for (&size, &tls) in sizes.iter().zip(tls) {
        let kind = if tls { TLS_NAME } else { "master" };
        for owner in 0..size {
            names.push(match size > 1 && owner != slot % size {
                true => format!("{STANDBY_PREFIX}{kind}"),
                false => kind.to_string(),
            });
        }
    }
    names.join(":")
}

/// Sends `signal` to child `pid`; a failure is logged.
fn signal_child(pid: u32, signal: Signal) {
    let Some(target) = Pid::from_raw(pid as i32) else {
        return;
    };
    if let Err(e) = kill_process(target, signal) {
        log::warn!("cannot signal worker process {pid}: {e}");
    }
}

/// A socket holding the master's place in the chain of session ticket keys, for one child
/// to read once (see `tls::tickets`), at a descriptor no move to 3, 4, ... overwrites.
fn ticket_keys() -> io::Result<OwnedFd> {
    let link = tickets::export().map_err(io::Error::other)?;
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.write_all(&link.to_bytes())?;
    rustix::io::fcntl_dupfd_cloexec(theirs, HIGH_FD).map_err(io::Error::from)
}

/// In a new child: dies with the master, and takes the sockets as descriptors 3, 4, ...
/// (`dup2` leaves them open across exec).
fn move_sockets(fds: &[i32]) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
    for (at, fd) in (3..).zip(fds) {
        // SAFETY: `fd` is open (the master keeps it), and descriptor `at` is the child's to
        // replace: whatever the master had there is close-on-exec, not needed after exec.
        if unsafe { libc::dup2(*fd, at) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Watches a child: tells the master each time it says `READY=1`, and when it exits.
async fn watch_child(mut child: Child, notices: UnixDatagram, master: Addr<Master>) {
    let pid = child.id().unwrap_or(0);
    let mut buf = [0u8; 512];
    let mut listening = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            got = notices.recv(&mut buf), if listening => match got {
                Ok(n) => notified(pid, &buf[..n], &master),
                Err(e) => {
                    log::warn!("worker process {pid}: cannot read its notifications: {e}");
                    listening = false;
                }
            },
        }
    };
    master.do_send(ChildExited { pid, status });
}

/// Tells the master what a child's datagram says: that it is ready, or its counters.
fn notified(pid: u32, datagram: &[u8], master: &Addr<Master>) {
    if let Some(report) = StatusReport::from_notice(datagram) {
        master.do_send(ChildStatus(pid, report));
    }
    if says_ready(datagram) {
        master.do_send(ChildReady(pid));
    }
}

/// What a stuck child does, for the log.
fn describe_stuck(child: &ChildProcess) -> String {
    match child.report.map(|r| r.longest_request) {
        Some(longest) if !longest.is_zero() => {
            format!(
                "a request has run for {:?}",
                longest + child.heard.elapsed()
            )
        }
        _ => format!("silent for {:?}", child.heard.elapsed()),
    }
}

/// Whether an sd_notify datagram carries `READY=1`.
fn says_ready(datagram: &[u8]) -> bool {
    datagram
        .split(|&b| b == b'\n')
        .any(|line| line == b"READY=1")
}

impl Actor for Master {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for slot in 0..self.supervision.workers {
            self.spawn_child(self.generation, slot, ctx);
        }
        ctx.spawn(watch_signals(ctx.address()).into_actor(self));
        ctx.run_interval(HEARTBEAT, |master, ctx| master.check_children(ctx));
        if let Some(period) = self.notifier.as_ref().and_then(Notifier::watchdog) {
            ctx.run_interval(period, |master, _| master.notify(State::Alive));
        }
        if let Some(socket) = self.supervision.metrics.take() {
            let deadline = self.supervision.read_timeout;
            let server_name = self.supervision.server_name.clone();
            let source = ctx.address().recipient();
            Metrics::new(socket, source, deadline, server_name).start();
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        System::current().stop();
    }
}

impl actix::Handler<StopAll> for Master {
    type Result = ();

    fn handle(&mut self, _: StopAll, ctx: &mut Self::Context) {
        log::info!("stopping every worker process");
        self.notify(State::Stopping);
        self.stopping = true;
        self.retire(|_, _| true, ctx);
        if self.children.is_empty() {
            ctx.stop();
        }
    }
}

impl actix::Handler<Reload> for Master {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Self::Context) {
        if self.stopping || self.reloading.is_some() {
            return log::warn!("reload ignored: a stop or a reload is under way");
        }
        let next = self.generation + 1;
        log::info!(
            "reloading: starting {} new worker processes",
            self.supervision.workers
        );
        self.notify(State::Reloading);
        self.reloading = Some(next);
        for slot in 0..self.supervision.workers {
            self.spawn_child(next, slot, ctx);
        }
        ctx.run_later(READY_TIMEOUT, move |master, ctx| {
            if master.reloading == Some(next) {
                let why = format!("new worker processes not ready in {READY_TIMEOUT:?}");
                master.fail_reload(&why, ctx);
            }
        });
    }
}

impl actix::Handler<Forward> for Master {
    type Result = ();

    fn handle(&mut self, Forward(signal): Forward, _: &mut Self::Context) {
        log::info!("passing {signal:?} on to every worker process");
        for pid in self.children.keys() {
            signal_child(*pid, signal);
        }
    }
}

impl actix::Handler<ChildReady> for Master {
    type Result = ();

    fn handle(&mut self, ChildReady(pid): ChildReady, ctx: &mut Self::Context) {
        self.child_ready(pid, ctx);
    }
}

impl actix::Handler<ChildStatus> for Master {
    type Result = ();

    fn handle(&mut self, ChildStatus(pid, report): ChildStatus, _: &mut Self::Context) {
        if let Some(child) = self.children.get_mut(&pid) {
            child.report = Some(report);
            child.heard = Instant::now();
        }
    }
}

impl actix::Handler<Collect> for Master {
    type Result = MessageResult<Collect>;

    fn handle(&mut self, _: Collect, _: &mut Self::Context) -> Self::Result {
        let mut samples: Vec<Sample> = (self.children.iter())
            .filter_map(|(pid, child)| {
                let report = child.report?;
                let (child, stuck) = (Some(*pid), child.stuck);
                Some(Sample {
                    child,
                    stuck,
                    report,
                })
            })
            .collect();
        samples.sort_by_key(|sample| sample.child);
        MessageResult(samples)
    }
}

impl actix::Handler<ChildExited> for Master {
    type Result = ();

    fn handle(&mut self, exited: ChildExited, ctx: &mut Self::Context) {
        self.child_exited(exited.pid, exited.status, ctx);
    }
}

/// SIGTERM and SIGINT stop all; SIGHUP reloads; SIGUSR1 is passed on to the children.
async fn watch_signals(master: Addr<Master>) {
    signals::watch(move |received| match received {
        Received::Stop => master.do_send(StopAll),
        Received::Hangup => master.do_send(Reload),
        Received::User1 => master.do_send(Forward(Signal::USR1)),
    })
    .await
}

/// Runs a master of children on `sockets` (a group per interface, see [`group`]) until it
/// is stopped.
pub(crate) fn run(
    sockets: &[Vec<TcpListener>],
    program: (OsString, Vec<OsString>),
    supervision: Supervision,
    notifier: Option<Notifier>,
) -> io::Result<()> {
    let system = actix::System::new();
    let master = Master::new(sockets, program, supervision, notifier)?;
    system.block_on(async { master.start() });
    system.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slot_owns_one_socket_of_each_group() {
        let table: [(&[usize], &[bool], usize, &str); 5] = [
            (&[1], &[false], 0, "master"),
            (&[1, 1], &[false, true], 3, "master:tls"),
            (&[2], &[false], 0, "master:standby-master"),
            (&[2], &[false], 1, "standby-master:master"),
            (
                &[3, 1, 3],
                &[false, false, true],
                4,
                "standby-master:master:standby-master:master:standby-tls:tls:standby-tls",
            ),
        ];
        for (sizes, tls, slot, names) in table {
            assert_eq!(
                socket_names(sizes, tls, slot),
                names,
                "{sizes:?} slot {slot}"
            );
        }
    }

    #[test]
    fn a_socket_becomes_a_reuse_port_group_on_its_address() {
        let bound = crate::server::bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let addr = bound.local_addr().unwrap();
        let members = group(bound, 3, 16, true).unwrap();
        assert_eq!(members.len(), 3);
        for member in &members {
            assert_eq!(member.local_addr().unwrap(), addr);
            assert!(socket2::SockRef::from(member).reuse_port().unwrap());
        }

        // A passed socket in no group stays alone; one in a group gets members.
        let passed = crate::server::bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        assert_eq!(group(passed, 3, 16, false).unwrap().len(), 1);
        let in_group = crate::server::bind("127.0.0.1:0".parse().unwrap(), 16, true).unwrap();
        assert_eq!(group(in_group, 2, 16, false).unwrap().len(), 2);
    }
}
