//! The Server actor: binds the interfaces, owns the other actors, and coordinates `Start`,
//! `Stop`, `Restart` and `Status`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, MetricsSocket};
use crate::dispatcher::{Dispatcher, Drain, Shutdown};
use crate::listener::{Backpressure, Listener, Pause};
use crate::metrics::{Collect, Metrics, Sample};
use crate::monitor::{Draining, Halt, Handover, Monitor};
use crate::pool::{IdleSet, Pool, Settings};
use crate::signals::{self, Received};
use crate::stats::{Stats, StatusReport};
use crate::systemd::{Notifier, State};
use crate::tls::TlsSettings;
use crate::worker::Worker;

/// How often a worker process tells its master its counters: the master takes a process
/// silent for longer than its `--stuck-after` for stuck.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(250);

/// Bind the interfaces (if not yet bound) and start serving; answers the bound addresses.
#[derive(Message)]
#[rtype(result = "Result<Vec<SocketAddr>, ServerError>")]
pub struct Start;

/// Stop serving: close the listening sockets at once, then the connections.
///
/// Graceful: in-flight requests finish (within `shutdown_timeout`) and their responses say
/// `Connection: close`; an idle keep-alive connection stays open for `drain_idle` after its
/// last response, so that a request already on its way is answered (with `Connection:
/// close`) rather than lost. Otherwise workers are stopped at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop {
    /// Wait for in-flight requests.
    pub graceful: bool,
}

/// Replace the workers and the Monitor, keeping the listening sockets open.
#[derive(Message)]
#[rtype(result = "Result<(), ServerError>")]
pub struct Restart;

/// Report gauges and totals.
#[derive(Message)]
#[rtype(result = "StatusReport")]
pub struct Status;

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// An interface could not be bound.
    Bind {
        /// The interface.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// The pool could not be set up (e.g. no file descriptors left).
    Io(io::Error),
    /// A socket given already listening (socket activation) could not be used.
    Listener(io::Error),
    /// The server actor is gone.
    Gone,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            ServerError::Io(e) => write!(f, "cannot start the worker pool: {e}"),
            ServerError::Listener(e) => write!(f, "cannot use a passed listening socket: {e}"),
            ServerError::Gone => f.write_str("the server has stopped"),
        }
    }
}

impl std::error::Error for ServerError {}

/// One generation of workers with its Dispatcher and Monitor; a restart replaces it.
struct Generation {
    /// Admits connections and sizes the pool.
    dispatcher: Addr<Dispatcher>,
    /// Keeps time: idle timeouts and ticks.
    monitor: Addr<Monitor>,
    /// What the actors and workers share.
    pool: Arc<Pool>,
}

impl Generation {
    fn start(config: &Config, stats: &Arc<Stats>) -> io::Result<Generation> {
        let app = config.method.application();
        let settings = Settings {
            app: app.clone(),
            limits: config.limits,
            read_timeout: config.read_timeout,
            max_body: config.max_body,
            server_name: config.server_name.clone(),
            stats: stats.clone(),
            draining: Arc::new(AtomicBool::new(false)),
            access_log: config.access_log.clone(),
            forwarded: config.proxies.forwarded.clone(),
        };
        let idle = IdleSet::new(stats.clone())?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = Arc::new(Pool::new(settings, idle, cores, config.tick));
        let dispatcher_ctx = actix::Context::<Dispatcher>::new();
        let ticks = dispatcher_ctx.address().recipient();
        let (timeout, drain_idle) = (config.timeout, config.drain_idle);
        let monitor = Monitor::new(pool.clone(), timeout, drain_idle, config.tick, ticks).start();
        let factory = Worker::factory(pool.clone());
        let (min, max) = (config.min_threads, config.max_threads);
        let dispatcher = Dispatcher::new(pool.clone(), min, max, factory, stats.clone());
        Ok(Generation {
            dispatcher: dispatcher_ctx.run(dispatcher),
            monitor,
            pool,
        })
    }

    async fn stop(self, graceful: bool, deadline: Duration) {
        self.pool.settings.draining.store(true, Ordering::Relaxed);
        if graceful {
            self.drain(deadline).await;
        }
        let _ = self.monitor.send(Halt).await;
        let _ = self.dispatcher.send(Shutdown).await;
    }

    /// Waits (up to `deadline`) until no request is in flight and no keep-alive connection is
    /// left: the Monitor closes those that stay silent for `drain_idle`, the workers answer the
    /// others' next request with `Connection: close`.
    async fn drain(&self, deadline: Duration) {
        let _ = self.monitor.send(Draining).await;
        if tokio::time::timeout(deadline, self.dispatcher.send(Drain))
            .await
            .is_err()
        {
            log::warn!("shutdown timeout passed with requests or connections still open");
        }
    }

    /// Moves the waiting connections to `next` (and those still being served, once served),
    /// then drains and stops this generation.
    async fn hand_over(self, next: Arc<Pool>, deadline: Duration) {
        self.pool.set_successor(next.clone());
        for (conn, fresh) in self.monitor.send(Handover).await.unwrap_or_default() {
            if let Err(e) = next.idle.admit(conn, fresh) {
                log::warn!("cannot move a connection to the new pool: {e}");
            }
        }
        if tokio::time::timeout(deadline, self.dispatcher.send(Drain))
            .await
            .is_err()
        {
            log::warn!("restart: shutdown timeout passed with requests still in flight");
        }
        let _ = self.dispatcher.send(Shutdown).await;
    }
}

/// What runs while the server is started.
struct Running {
    /// One per interface.
    listeners: Vec<Addr<Listener>>,
    /// The current generation of workers.
    generation: Generation,
}

/// Owns the listening sockets and the actors that serve them.
pub struct Server {
    /// The configuration.
    config: Arc<Config>,
    /// The listening sockets, kept across restarts.
    sockets: Vec<TcpListener>,
    /// Each socket's TLS configuration (`None`: plain HTTP), read again by each restart.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// The actors, while started.
    running: Option<Running>,
    /// Gauges and totals, kept across restarts.
    stats: Arc<Stats>,
    /// Stop the actix system after `Stop` (standalone use).
    exit_on_stop: bool,
    /// The metrics endpoint, once started: it serves for the Server's whole life.
    metrics: Option<Addr<Metrics>>,
}

impl Server {
    /// A server for `config`, not yet started (send it [`Start`]).
    pub fn new(config: Config) -> Self {
        Server {
            config: Arc::new(config),
            sockets: Vec::new(),
            tls: Vec::new(),
            running: None,
            stats: Arc::new(Stats::default()),
            exit_on_stop: false,
            metrics: None,
        }
    }

    /// Makes `Stop` also stop the actix system, as a standalone server does.
    pub fn exit_on_stop(mut self) -> Self {
        self.exit_on_stop = true;
        self
    }

    fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Binds the interfaces, or takes duplicates of the sockets given already listening.
    fn bind_all(&mut self) -> Result<(), ServerError> {
        if !self.sockets.is_empty() {
            return Ok(());
        }
        self.sockets = listening_sockets(&self.config)?;
        self.tls = tls_configs(&self.config);
        Ok(())
    }

    /// Reads every TLS interface's certificate and key again (restart): new connections get
    /// the new ones, open ones keep theirs; files that do not load are logged, and the
    /// interface keeps what it had.
    fn reload_tls(&mut self) {
        let roles = socket_roles(&self.config);
        for ((socket, role), current) in self.sockets.iter().zip(roles).zip(&mut self.tls) {
            let Some(settings) = role.tls else {
                continue;
            };
            match settings.reload() {
                Ok(reloaded) => *current = Some(reloaded.server_config()),
                Err(e) => match socket.local_addr() {
                    Ok(addr) => log::error!("{e}; {addr} keeps its certificate"),
                    Err(_) => log::error!("{e}; the socket keeps its certificate"),
                },
            }
        }
    }

    /// Stops gracefully once `limit` responses are sent (`max_requests`), so that the master
    /// replaces this process: the worker that sends the last one wakes the Server at once.
    fn recycle_after(&self, limit: u64, ctx: &mut actix::Context<Self>) {
        self.stats.set_quota(limit);
        let stats = self.stats.clone();
        let sent = async move { stats.quota_sent().await };
        ctx.spawn(sent.into_actor(self).map(move |(), _, ctx| {
            log::info!("{limit} responses sent (max_requests): stopping to be replaced");
            ctx.address().do_send(Stop { graceful: true });
        }));
    }

    /// Starts the metrics endpoint, if configured and not started yet.
    fn start_metrics(&mut self, ctx: &mut actix::Context<Self>) -> Result<(), ServerError> {
        if self.metrics.is_some() {
            return Ok(());
        }
        let Some(listener) = metrics_socket(&self.config)? else {
            return Ok(());
        };
        let (source, deadline) = (ctx.address().recipient(), self.config.read_timeout);
        let server_name = self.config.server_name.clone();
        self.metrics = Some(Metrics::new(listener, source, deadline, server_name).start());
        Ok(())
    }

    /// Tells systemd, if it asked (`NOTIFY_SOCKET`).
    fn notify(&self, state: State) {
        if let Some(notifier) = &self.config.notifier {
            notifier.notify(state);
        }
    }

    fn start_listeners(&self, generation: &Generation) -> Vec<Addr<Listener>> {
        let mut listeners = Vec::new();
        let roles = socket_roles(&self.config);
        for ((socket, tls), role) in self.sockets.iter().zip(&self.tls).zip(roles) {
            let standby = role.standby.then_some(self.config.standby_delay);
            match socket.try_clone() {
                Ok(dup) => {
                    let to = generation.dispatcher.clone().recipient();
                    let backpressure = Backpressure {
                        max_threads: self.config.max_threads,
                        max_queued: self.config.max_queued,
                    };
                    let proxies = self.config.proxies.clone();
                    let stats = self.stats.clone();
                    let tls = tls.clone();
                    let listener =
                        Listener::new(dup, to, stats, backpressure, proxies, tls, standby);
                    listeners.push(listener.start());
                }
                Err(e) => log::error!("cannot share a listening socket: {e}"),
            }
        }
        listeners
    }

    /// Reopens the access log file (logrotate moved it away); on failure the old file stays.
    fn reopen_access_log(&self) {
        let access_log = &self.config.access_log;
        if let (Err(e), Some(path)) = (access_log.reopen(), access_log.path()) {
            log::warn!("cannot reopen the access log {}: {e}", path.display());
        }
    }

    fn start(&mut self) -> Result<Vec<SocketAddr>, ServerError> {
        if self.running.is_none() {
            self.bind_all()?;
            let generation =
                Generation::start(&self.config, &self.stats).map_err(ServerError::Io)?;
            let listeners = self.start_listeners(&generation);
            self.running = Some(Running {
                listeners,
                generation,
            });
            log::info!("serving on {:?}", self.bound_addrs());
        }
        Ok(self.bound_addrs())
    }
}

/// The listening sockets of `config`: its interfaces bound now, or duplicates of the sockets
/// it was given already listening.
pub(crate) fn listening_sockets(config: &Config) -> Result<Vec<TcpListener>, ServerError> {
    match config.listeners.is_empty() {
        true => (config.interfaces.iter())
            .map(|iface| bind(iface.addr, config.queue_size, config.reuse_port))
            .collect(),
        false => config
            .listeners
            .iter()
            .map(|listening| adopt(&listening.socket))
            .collect(),
    }
}

/// The TLS configuration of each of [`listening_sockets`]`(config)`, in the same order
/// (`None` for a plain one).
pub(crate) fn tls_configs(config: &Config) -> Vec<Option<Arc<rustls::ServerConfig>>> {
    (socket_roles(config).into_iter())
        .map(|role| role.tls.map(|tls| tls.server_config()))
        .collect()
}

/// What a listening socket serves as, beside the socket itself.
#[derive(Clone, Copy)]
struct SocketRole<'a> {
    /// What it serves TLS with (`None`: plain HTTP).
    tls: Option<&'a Arc<TlsSettings>>,
    /// A sibling worker process's socket, taken from on standby (see
    /// `config::Listening::standby`).
    standby: bool,
}

/// The role of each of [`listening_sockets`]`(config)`, in the same order: its interface's,
/// or that of the socket given already listening.
fn socket_roles(config: &Config) -> Vec<SocketRole<'_>> {
    match config.listeners.is_empty() {
        true => (config.interfaces.iter())
            .map(|iface| SocketRole {
                tls: iface.tls.as_ref(),
                standby: false,
            })
            .collect(),
        false => (config.listeners.iter())
            .map(|given| SocketRole {
                tls: given.tls.as_ref(),
                standby: given.standby,
            })
            .collect(),
    }
}

/// The metrics endpoint's socket of `config`, if it has one: bound now (with the interfaces'
/// backlog), or a duplicate of the one given already listening.
pub(crate) fn metrics_socket(config: &Config) -> Result<Option<TcpListener>, ServerError> {
    let listener = match &config.metrics {
        None => return Ok(None),
        Some(MetricsSocket::Bind(addr)) => bind(*addr, config.queue_size, false)?,
        Some(MetricsSocket::Listening(socket)) => adopt(socket)?,
    };
    if let Ok(addr) = listener.local_addr() {
        log::info!("metrics on http://{addr}/metrics");
    }
    Ok(Some(listener))
}

/// A non-blocking duplicate of a socket given already listening.
fn adopt(socket: &TcpListener) -> Result<TcpListener, ServerError> {
    let dup = socket.try_clone().map_err(ServerError::Listener)?;
    dup.set_nonblocking(true).map_err(ServerError::Listener)?;
    Ok(dup)
}

/// A non-blocking socket listening on `addr` with `backlog`, `SO_REUSEPORT` if `reuse_port`
/// (an IPv6 one takes IPv6 only).
pub(crate) fn bind(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> Result<TcpListener, ServerError> {
    let fail = |source| ServerError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    Ok(socket.into())
}

async fn pause_all(listeners: Vec<Addr<Listener>>) {
    for listener in listeners {
        let _ = listener.send(Pause).await;
    }
}

async fn retire(running: Running, graceful: bool, deadline: Duration) {
    pause_all(running.listeners).await;
    running.generation.stop(graceful, deadline).await;
}

impl Actor for Server {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.config.handle_signals {
            ctx.spawn(watch_signals(ctx.address()).into_actor(self));
        }
        if let (true, Some(notifier)) = (self.config.reports_to_master, &self.config.notifier) {
            actix::spawn(heartbeat(self.stats.clone(), notifier.clone()));
        }
        if let Some(period) = self.config.notifier.as_ref().and_then(Notifier::watchdog) {
            ctx.run_interval(period, |server, _| server.notify(State::Alive));
        }
        if let Some(limit) = self.config.recycle_after {
            self.recycle_after(limit, ctx);
        }
    }
}

impl actix::Handler<Start> for Server {
    type Result = Result<Vec<SocketAddr>, ServerError>;

    fn handle(&mut self, _: Start, ctx: &mut Self::Context) -> Self::Result {
        self.start_metrics(ctx)?;
        let started = self.start()?;
        self.notify(State::Ready);
        Ok(started)
    }
}

impl actix::Handler<Stop> for Server {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Stop, _ctx: &mut Self::Context) -> Self::Result {
        log::info!("stopping (graceful: {})", msg.graceful);
        self.notify(State::Stopping);
        let running = self.running.take();
        if let Some(running) = &running {
            // Responses from now on say `Connection: close`, even before the drain begins.
            let draining = &running.generation.pool.settings.draining;
            draining.store(true, Ordering::Relaxed);
        }
        // New clients are refused from now on, rather than left in the backlog during the drain
        // (the Listeners' duplicates close as they pause).
        self.sockets.clear();
        let deadline = self.config.shutdown_timeout;
        let stopping = async move {
            if let Some(running) = running {
                retire(running, msg.graceful, deadline).await;
            }
        };
        AtomicResponse::new(Box::pin(stopping.into_actor(self).map(|(), server, _| {
            log::info!("stopped");
            if server.exit_on_stop {
                System::current().stop();
            }
        })))
    }
}

impl actix::Handler<Restart> for Server {
    type Result = AtomicResponse<Self, Result<(), ServerError>>;

    fn handle(&mut self, _: Restart, _ctx: &mut Self::Context) -> Self::Result {
        log::info!("restarting");
        self.notify(State::Reloading);
        self.reopen_access_log();
        self.reload_tls();
        let old = self.running.take();
        let started = self.start().map(|_| ());
        let next = self.running.as_ref().map(|r| r.generation.pool.clone());
        let deadline = self.config.shutdown_timeout;
        let retiring = async move {
            if let Some(old) = old {
                pause_all(old.listeners).await;
                match next {
                    Some(next) => old.generation.hand_over(next, deadline).await,
                    None => old.generation.stop(true, deadline).await,
                }
            }
        };
        AtomicResponse::new(Box::pin(retiring.into_actor(self).map(
            move |(), server, _| {
                log::info!("restarted");
                if started.is_ok() {
                    server.notify(State::Ready);
                }
                started
            },
        )))
    }
}

impl actix::Handler<Collect> for Server {
    type Result = MessageResult<Collect>;

    fn handle(&mut self, _: Collect, _ctx: &mut Self::Context) -> Self::Result {
        let report = self.stats.report(self.running.is_some());
        let sample = Sample {
            child: None,
            stuck: false,
            report,
        };
        MessageResult(vec![sample])
    }
}

impl actix::Handler<Status> for Server {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.stats.report(self.running.is_some()))
    }
}

/// Sends the master (`--workers`) this process's counters every [`HEARTBEAT`], from a task of
/// its own: the Server's mailbox waits while it stops or restarts, the heartbeat does not.
async fn heartbeat(stats: Arc<Stats>, master: Notifier) {
    let mut beats = tokio::time::interval(HEARTBEAT);
    loop {
        beats.tick().await;
        if let Err(e) = master.send(&stats.report(true).to_notice()) {
            log::debug!("cannot report to the master: {e}");
        }
    }
}

/// SIGTERM and SIGINT stop gracefully; SIGHUP and SIGUSR1 restart, as Rocket does.
async fn watch_signals(server: Addr<Server>) {
    signals::watch(move |received| match received {
        Received::Stop => server.do_send(Stop { graceful: true }),
        Received::Hangup | Received::User1 => server.do_send(Restart),
    })
    .await
}
