//! The Master actor (`--workers N`): binds the interfaces once and runs N child processes
//! that serve them, as gunicorn's arbiter does. Each child is today's single-process server,
//! started from the same executable and arguments; it inherits the listening sockets the way
//! systemd's socket activation passes them (descriptors 3, 4, ...), so the kernel spreads
//! connections between the children and no balancer runs in between.
//!
//! The master supervises: a child that exits while the master runs is replaced, after a
//! backoff that grows while children die at start (a broken application must not make the
//! master spin). SIGTERM and SIGINT stop every child gracefully, then the master; SIGHUP and
//! SIGUSR1 are passed on (each child restarts in place). A child dies with its master
//! (`PR_SET_PDEATHSIG`), so a killed master leaves no server behind.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rustix::process::{kill_process, Pid, Signal};
use tokio::process::Command;

use crate::signals::{self, Received};
use crate::systemd::{Notifier, State, CHILD_FDS};

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

/// A running child.
struct ChildProcess {
    /// Its process id.
    pid: u32,
    /// When it started.
    started: Instant,
}

/// Runs the children and keeps their number.
pub(crate) struct Master {
    /// The listening sockets, kept at [`HIGH_FD`] and above.
    sockets: Vec<OwnedFd>,
    /// The executable and arguments a child runs.
    program: (OsString, Vec<OsString>),
    /// The children, by slot (one per worker process) (`None`: waiting to be replaced).
    children: Vec<Option<ChildProcess>>,
    /// The wait before the next replacement of a child that died at start.
    backoff: Duration,
    /// Stopping: exited children are not replaced, and the master stops with the last.
    stopping: bool,
    /// Tells systemd that the service is up, and stopping (`NOTIFY_SOCKET`).
    notifier: Option<Notifier>,
}

/// Stop every child gracefully, then the master.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopAll;

/// Pass a signal on to every child.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forward(pub(crate) Signal);

impl Master {
    /// A master running `workers` children of `program` on `sockets`.
    pub(crate) fn new(
        sockets: &[TcpListener],
        program: (OsString, Vec<OsString>),
        workers: usize,
        notifier: Option<Notifier>,
    ) -> io::Result<Master> {
        let high = |socket: &TcpListener| rustix::io::fcntl_dupfd_cloexec(socket, HIGH_FD);
        let sockets = sockets.iter().map(high).collect::<Result<_, _>>()?;
        Ok(Master {
            sockets,
            program,
            children: (0..workers).map(|_| None).collect(),
            backoff: FIRST_BACKOFF,
            stopping: false,
            notifier,
        })
    }

    /// Starts the child of `slot` and watches for its exit.
    fn spawn_child(&mut self, slot: usize, ctx: &mut actix::Context<Self>) {
        let mut child = match self.command().spawn() {
            Ok(child) => child,
            Err(e) => {
                log::error!("cannot start a worker process: {e}");
                return self.replace_later(slot, ctx);
            }
        };
        let pid = child.id().unwrap_or(0);
        log::info!("worker process {pid} started");
        let started = Instant::now();
        self.children[slot] = Some(ChildProcess { pid, started });
        let exited = async move { child.wait().await };
        ctx.spawn(
            exited
                .into_actor(self)
                .map(move |status, master, ctx| master.child_exited(slot, pid, status, ctx)),
        );
    }

    /// The command of a child: this program, its descriptors 3, 4, ... the sockets.
    fn command(&self) -> Command {
        let (program, args) = &self.program;
        let mut command = Command::new(program);
        command
            .args(args)
            .env(CHILD_FDS, self.sockets.len().to_string());
        let fds: Vec<i32> = self.sockets.iter().map(|fd| fd.as_raw_fd()).collect();
        // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
        // (prctl, dup2) on descriptors the master owns and keeps open, and allocates nothing.
        unsafe {
            command.pre_exec(move || move_sockets(&fds));
        }
        command
    }

    fn child_exited(
        &mut self,
        slot: usize,
        pid: u32,
        status: io::Result<ExitStatus>,
        ctx: &mut actix::Context<Self>,
    ) {
        let lived = (self.children[slot].take()).map(|child| child.started.elapsed());
        let finished = matches!(&status, Ok(status) if status.success());
        match status {
            Ok(status) => log::info!("worker process {pid} exited ({status})"),
            Err(e) => log::warn!("worker process {pid}: cannot wait: {e}"),
        }
        match (self.stopping, finished) {
            (true, _) if self.children.iter().all(Option::is_none) => {
                log::info!("every worker process stopped");
                ctx.stop();
            }
            (true, _) => {}
            (false, true) => {
                log::info!("worker process {pid} finished (max_requests, or a stop); replaced");
                self.spawn_child(slot, ctx);
            }
            (false, false) => self.replace_failed(slot, pid, lived, ctx),
        }
    }

    /// Replaces a child that failed, after a backoff that grows while children die at start.
    fn replace_failed(
        &mut self,
        slot: usize,
        pid: u32,
        lived: Option<Duration>,
        ctx: &mut actix::Context<Self>,
    ) {
        match lived {
            Some(lived) if lived >= STABLE_AFTER => self.backoff = FIRST_BACKOFF,
            _ => self.backoff = (self.backoff * 2).min(MAX_BACKOFF),
        }
        log::warn!("worker process {pid} replaced in {:?}", self.backoff);
        self.replace_later(slot, ctx);
    }

    fn replace_later(&mut self, slot: usize, ctx: &mut actix::Context<Self>) {
        ctx.run_later(self.backoff, move |master, ctx| {
            if !master.stopping {
                master.spawn_child(slot, ctx);
            }
        });
    }

    /// Tells systemd, if it asked (`NOTIFY_SOCKET`).
    fn notify(&self, state: State) {
        if let Some(notifier) = &self.notifier {
            notifier.notify(state);
        }
    }

    /// Sends `signal` to every running child.
    fn signal_children(&self, signal: Signal) {
        for child in self.children.iter().flatten() {
            let Some(pid) = Pid::from_raw(child.pid as i32) else {
                continue;
            };
            if let Err(e) = kill_process(pid, signal) {
                log::warn!("cannot signal worker process {}: {e}", child.pid);
            }
        }
    }
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

impl Actor for Master {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for slot in 0..self.children.len() {
            self.spawn_child(slot, ctx);
        }
        self.notify(State::Ready);
        ctx.spawn(watch_signals(ctx.address()).into_actor(self));
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
        self.signal_children(Signal::TERM);
        if self.children.iter().all(Option::is_none) {
            ctx.stop();
        }
    }
}

impl actix::Handler<Forward> for Master {
    type Result = ();

    fn handle(&mut self, Forward(signal): Forward, _: &mut Self::Context) {
        log::info!("passing {signal:?} on to every worker process");
        self.signal_children(signal);
    }
}

/// SIGTERM and SIGINT stop all; SIGHUP and SIGUSR1 are passed on to the children.
async fn watch_signals(master: Addr<Master>) {
    signals::watch(move |received| match received {
        Received::Stop => master.do_send(StopAll),
        Received::Hangup => master.do_send(Forward(Signal::HUP)),
        Received::User1 => master.do_send(Forward(Signal::USR1)),
    })
    .await
}

/// Runs a master of `workers` children on `sockets` until it is stopped.
pub(crate) fn run(
    sockets: &[TcpListener],
    program: (OsString, Vec<OsString>),
    workers: usize,
    notifier: Option<Notifier>,
) -> io::Result<()> {
    let system = actix::System::new();
    let master = Master::new(sockets, program, workers, notifier)?;
    system.block_on(async { master.start() });
    system.run()
}
