//! Rocket's configuration: a builder with documented defaults, validated once at build time.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::{AccessLog, AccessLogDestination, AccessLogFormat};
use crate::allow_list::AllowList;
use crate::app::Application;
use crate::fs::FileServer;
use crate::http::{Limits, ProxyProtocol};
use crate::systemd::Notifier;
use crate::tls::{ClientCerts, TlsError, TlsSettings};

/// The address used when no interface is given, as Rocket's default.
pub const DEFAULT_INTERFACE: &str = "127.0.0.1:8000";

/// The peers allowed to send a PROXY protocol header unless told otherwise: this machine, as
/// with gunicorn.
pub const DEFAULT_PROXY_ALLOW_FROM: &str = "127.0.0.1,::1";

/// The default bound on connections waiting for a worker when the pool is full.
pub const DEFAULT_MAX_QUEUED: usize = 1024;

/// The default body size limit: 1 GiB, as waitress (Rocket has none).
pub const DEFAULT_MAX_BODY: u64 = 1 << 30;

/// How long a connection waits on a sibling worker process's socket before it is taken on
/// standby, unless told otherwise (see [`ConfigBuilder::standby_delay`]).
pub const DEFAULT_STANDBY_DELAY: Duration = Duration::from_millis(5);

/// One address to listen on (a host name gives one per address it resolves to).
#[derive(Debug, Clone)]
pub(crate) struct Interface {
    /// The socket address to bind (port 0 picks a free port, for each socket).
    pub(crate) addr: SocketAddr,
    /// What a TLS interface serves with (shared by the addresses of one name); `None`: plain
    /// HTTP.
    pub(crate) tls: Option<Arc<TlsSettings>>,
}

/// An interface as given to the builder, resolved and its files read at build time.
#[derive(Debug, Clone)]
struct GivenInterface {
    /// The address as written, so that errors name it.
    addr: String,
    /// The certificate chain and key files of a TLS interface.
    tls: Option<(PathBuf, PathBuf)>,
}

/// A TLS interface's certificate chain and key files.
type TlsFiles = (PathBuf, PathBuf);

/// A socket given already listening (socket activation), and its TLS settings if it is a
/// TLS interface (a passed socket named `tls`, as a master names its TLS ones).
#[derive(Debug, Clone)]
pub(crate) struct Listening {
    /// The socket; shared, since each server takes duplicates.
    pub(crate) socket: Arc<TcpListener>,
    /// What it serves TLS with; `None`: plain HTTP.
    pub(crate) tls: Option<Arc<TlsSettings>>,
    /// A sibling worker process's socket (see `master`): accepted from only when a
    /// connection waits on it longer than its owner would let it.
    pub(crate) standby: bool,
}

/// A socket given to the builder already listening.
#[derive(Debug, Clone)]
struct GivenListener {
    /// The socket; shared, since each server takes duplicates.
    socket: Arc<TcpListener>,
    /// The certificate chain and key files of a TLS interface.
    files: Option<TlsFiles>,
    /// See [`Listening::standby`].
    standby: bool,
}

/// What the server does with a request: Rocket's `method` option.
#[derive(Clone)]
pub(crate) enum Method {
    /// Run an application (`method = 'wsgi'`).
    Wsgi(Arc<dyn Application>),
    /// Serve the files under a document root (`method = 'fs'`).
    Fs(Arc<FileServer>),
}

impl Method {
    /// The application that answers requests.
    pub(crate) fn application(&self) -> Arc<dyn Application> {
        match self {
            Method::Wsgi(app) => app.clone(),
            Method::Fs(files) => files.clone(),
        }
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Wsgi(_) => f.write_str("Wsgi(..)"),
            Method::Fs(files) => write!(f, "Fs({})", files.root().display()),
        }
    }
}

/// A validated configuration; build it with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; several interfaces, IPv4 and IPv6, are allowed.
    pub(crate) interfaces: Vec<Interface>,
    /// Sockets already listening (systemd's socket activation), served instead of binding
    /// `interfaces`; shared, since each server takes duplicates.
    pub(crate) listeners: Vec<Listening>,
    /// Whether bound sockets set `SO_REUSEPORT`, so that independent servers share a port.
    pub(crate) reuse_port: bool,
    /// Tells systemd about start-up, restarts and stops (`NOTIFY_SOCKET`).
    pub(crate) notifier: Option<Notifier>,
    /// A worker process of a master (`--workers`): `notifier` is the master's, and the server
    /// sends it its counters every `server::HEARTBEAT`, so that the master can expose them and
    /// tell a stuck process.
    pub(crate) reports_to_master: bool,
    /// What to serve.
    pub(crate) method: Method,
    /// Workers kept even when idle (always > 0).
    pub(crate) min_threads: usize,
    /// Upper bound on workers; 0 means no limit.
    pub(crate) max_threads: usize,
    /// The listen backlog handed to the kernel.
    pub(crate) queue_size: u32,
    /// Accepted connections that may wait for a worker once `max_threads` are busy; past it
    /// the Listeners pause and the kernel's backlog holds new clients.
    pub(crate) max_queued: usize,
    /// How long an idle keep-alive connection is kept open.
    pub(crate) timeout: Duration,
    /// How long a request head may take to arrive (in all), and how long a client may keep a
    /// worker waiting on a body or a response that does not move.
    pub(crate) read_timeout: Duration,
    /// How long a graceful stop waits for in-flight requests.
    pub(crate) shutdown_timeout: Duration,
    /// How long a graceful stop leaves an idle keep-alive connection open, counted from when
    /// it was parked (at most `timeout`): a client may be sending its next request as the
    /// drain begins, and closing the connection under it would lose that request. A request
    /// that arrives in time is answered with `Connection: close`.
    pub(crate) drain_idle: Duration,
    /// How long a connection waits on a sibling worker process's socket (`--workers`) before
    /// this process takes it on standby: a running owner takes its own within microseconds
    /// (unless the machine is overloaded, and then it matters little which process serves),
    /// so only connections left by an owner that is starting, stopped or stuck are taken,
    /// and those are hardly delayed.
    pub(crate) standby_delay: Duration,
    /// Whether the server installs SIGTERM/SIGINT/SIGHUP/SIGUSR1 handlers.
    pub(crate) handle_signals: bool,
    /// Size limits of a request head.
    pub(crate) limits: Limits,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub(crate) max_body: u64,
    /// The period of the Monitor's tick, which drives pool shrinking and liveness checks.
    pub(crate) tick: Duration,
    /// The value of the `Server` response header: the product, without its version (which
    /// would only help an attacker pick an exploit).
    pub(crate) server_name: String,
    /// Where access lines go, open; shared by every generation, reopened on restart.
    pub(crate) access_log: Arc<AccessLog>,
    /// What a proxy in front says about the client: whom the server believes.
    pub(crate) proxies: Arc<Proxies>,
    /// Where the metrics endpoint listens, if anywhere.
    pub(crate) metrics: Option<MetricsSocket>,
    /// Stop gracefully (and exit) after about this many responses, so that a supervisor (the
    /// master of `--workers`) starts a fresh process: for applications that leak memory.
    pub(crate) recycle_after: Option<u64>,
}

/// The metrics endpoint's socket: an address to bind when the server starts, or a socket
/// given already listening.
#[derive(Debug, Clone)]
pub(crate) enum MetricsSocket {
    /// Bound by the first `Start`.
    Bind(SocketAddr),
    /// Bound by the caller; shared, since the server takes a duplicate.
    Listening(Arc<TcpListener>),
}

/// Whom the server believes about who a client is, when it runs behind a proxy.
#[derive(Debug)]
pub(crate) struct Proxies {
    /// Every connection must begin with a PROXY protocol header of these versions; `None`:
    /// connections carry none.
    pub(crate) protocol: Option<ProxyProtocol>,
    /// The peers allowed to connect when `protocol` is set (others are closed at once).
    pub(crate) allow_from: AllowList,
    /// The peers whose forwarded headers (`Forwarded`, `X-Forwarded-*`) are believed; `None`:
    /// nobody's, and they reach the application as sent.
    pub(crate) forwarded: Option<AllowList>,
}

impl Config {
    /// Starts a builder with Rocket's defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }
}

/// Builds a [`Config`]; every setter documents its default.
#[derive(Clone)]
pub struct ConfigBuilder {
    /// Interfaces as given, plain and TLS, in order.
    interfaces: Vec<GivenInterface>,
    /// The CA file that every TLS interface checks client certificates against.
    ca_certs: Option<PathBuf>,
    /// Whether TLS interfaces ask clients for a certificate; `None`: optionally with a CA
    /// file (as Rocket), else not.
    cert_reqs: Option<ClientCerts>,
    /// See [`Config::listeners`]: each socket, with the certificate and key files of a TLS
    /// one.
    listeners: Vec<GivenListener>,
    /// See [`Config::reuse_port`].
    reuse_port: bool,
    /// See [`Config::notifier`].
    notifier: Option<Notifier>,
    /// See [`Config::reports_to_master`].
    reports_to_master: bool,
    /// The application, if one was given; `None` serves the demo page.
    app: Option<Arc<dyn Application>>,
    /// The document root, for method `fs`.
    document_root: Option<PathBuf>,
    /// Whether method `fs` lists directories without `index.html`.
    display_index: bool,
    /// See [`Config::min_threads`].
    min_threads: usize,
    /// See [`Config::max_threads`].
    max_threads: usize,
    /// See [`Config::queue_size`].
    queue_size: u32,
    /// See [`Config::max_queued`].
    max_queued: usize,
    /// See [`Config::timeout`].
    timeout: Duration,
    /// See [`Config::read_timeout`].
    read_timeout: Duration,
    /// See [`Config::shutdown_timeout`].
    shutdown_timeout: Duration,
    /// See [`Config::drain_idle`] (not yet capped by `timeout`).
    drain_idle: Duration,
    /// See [`Config::standby_delay`].
    standby_delay: Duration,
    /// See [`Config::handle_signals`].
    handle_signals: bool,
    /// See [`Config::limits`].
    limits: Limits,
    /// See [`Config::max_body`].
    max_body: u64,
    /// See [`Config::tick`].
    tick: Duration,
    /// Where access lines go (opened at build time).
    access_log: AccessLogDestination,
    /// The fields of an access line.
    access_log_format: AccessLogFormat,
    /// See [`Proxies::protocol`].
    proxy_protocol: Option<ProxyProtocol>,
    /// See [`Proxies::allow_from`], as given.
    proxy_allow_from: String,
    /// See [`Proxies::forwarded`], as given.
    forwarded_allow_ips: Option<String>,
    /// The metrics address as given, resolved at build time.
    metrics: Option<String>,
    /// A metrics socket given already listening (wins over `metrics`).
    metrics_listener: Option<Arc<TcpListener>>,
    /// See [`Config::recycle_after`]: the count (0: never).
    max_requests: u64,
    /// The most added at random to `max_requests`, so that children do not all recycle at once.
    max_requests_jitter: u64,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            interfaces: Vec::new(),
            ca_certs: None,
            cert_reqs: None,
            listeners: Vec::new(),
            reuse_port: false,
            notifier: None,
            reports_to_master: false,
            app: None,
            document_root: None,
            display_index: false,
            min_threads: 10,
            max_threads: 0,
            queue_size: libc::SOMAXCONN as u32,
            max_queued: DEFAULT_MAX_QUEUED,
            timeout: Duration::from_secs(600),
            read_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            drain_idle: Duration::from_secs(1),
            standby_delay: DEFAULT_STANDBY_DELAY,
            handle_signals: true,
            limits: Limits::default(),
            max_body: DEFAULT_MAX_BODY,
            tick: Duration::from_secs(1),
            access_log: AccessLogDestination::Log,
            access_log_format: AccessLogFormat::Common,
            proxy_protocol: None,
            proxy_allow_from: DEFAULT_PROXY_ALLOW_FROM.to_string(),
            forwarded_allow_ips: None,
            metrics: None,
            metrics_listener: None,
            max_requests: 0,
            max_requests_jitter: 0,
        }
    }
}

impl ConfigBuilder {
    /// Adds an interface such as `127.0.0.1:8000`, `[::1]:0` or `localhost:8000` (a host
    /// name is resolved at build time, and every address it gives is bound, as gunicorn
    /// does) (default: 127.0.0.1:8000 when no interface, plain or TLS, is given).
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.interfaces.push(GivenInterface {
            addr: addr.into(),
            tls: None,
        });
        self
    }

    /// Adds a TLS (HTTPS) interface, an address written as for [`ConfigBuilder::bind`]: it
    /// serves the certificate chain of the PEM file `cert` (the server's certificate first,
    /// then any intermediate ones) with the private key of the PEM file `key` (PKCS#8, PKCS#1
    /// or SEC1). Repeatable, and mixed with plain interfaces in any number (default: none).
    /// [`ConfigBuilder::build`] reads the files, and fails if the key is not the
    /// certificate's.
    pub fn tls_bind(
        mut self,
        addr: impl Into<String>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Self {
        let files = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        self.interfaces.push(GivenInterface {
            addr: addr.into(),
            tls: Some(files),
        });
        self
    }

    /// Sets the CA certificates (a PEM file) that every TLS interface checks client
    /// certificates against (default: none); with them, clients are asked for a certificate
    /// unless [`ConfigBuilder::cert_reqs`] says otherwise.
    pub fn ca_certs(mut self, path: impl AsRef<Path>) -> Self {
        self.ca_certs = Some(path.as_ref().to_path_buf());
        self
    }

    /// Sets whether TLS interfaces ask clients for a certificate (default:
    /// [`ClientCerts::Optional`] with [`ConfigBuilder::ca_certs`], as Rocket, else
    /// [`ClientCerts::None`]); `Optional` and `Required` need the CA file. A certificate a
    /// client sends must be valid, or its handshake fails.
    pub fn cert_reqs(mut self, policy: ClientCerts) -> Self {
        self.cert_reqs = Some(policy);
        self
    }

    /// Serves `socket`, already bound and listening (as systemd's socket activation passes
    /// them), instead of binding the interfaces: once any is given, `bind` addresses are not
    /// bound (default: none). The socket stays open until the configuration is dropped, so a
    /// stopped server's clients wait in its backlog instead of being refused.
    pub fn listener(self, socket: TcpListener) -> Self {
        self.passed_listener(socket, None, false)
    }

    /// Serves `socket`, already bound and listening: as a TLS interface with `files` (the
    /// certificate chain and key, as [`ConfigBuilder::tls_bind`] takes them) if given, and
    /// as a sibling's socket if `standby` (see [`Listening::standby`]).
    pub(crate) fn passed_listener(
        mut self,
        socket: TcpListener,
        files: Option<(&Path, &Path)>,
        standby: bool,
    ) -> Self {
        self.listeners.push(GivenListener {
            socket: Arc::new(socket),
            files: files.map(|(cert, key)| (cert.to_path_buf(), key.to_path_buf())),
            standby,
        });
        self
    }

    /// Sets `SO_REUSEPORT` on the bound sockets, so that several independent servers can
    /// listen on one port and the kernel spreads connections between them (default off).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Sends systemd's state notifications through `notifier`.
    pub(crate) fn notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Makes this a worker process of a master, which `notifier` reaches: the server reports
    /// its counters to it.
    pub(crate) fn reports_to_master(mut self) -> Self {
        self.reports_to_master = true;
        self
    }

    /// Sets the application (default: the built-in demo page that shows the environ).
    pub fn app(mut self, app: impl Application) -> Self {
        self.app = Some(Arc::new(app));
        self
    }

    /// Sets the fewest workers (default 10; must be > 0).
    pub fn min_threads(mut self, n: usize) -> Self {
        self.min_threads = n;
        self
    }

    /// Sets the most workers (default 0 = no limit; otherwise >= min_threads).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n;
        self
    }

    /// Sets the listen backlog (default SOMAXCONN).
    pub fn queue_size(mut self, n: u32) -> Self {
        self.queue_size = n;
        self
    }

    /// Sets the keep-alive idle timeout (default 600 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sets the head arrival and body stall timeout (default 10 s).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// Sets how long a graceful stop waits (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Sets how long a graceful stop keeps an idle keep-alive connection open after its last
    /// response, for a request already on its way (default 1 s; never longer than
    /// [`ConfigBuilder::timeout`]). A request that arrives in time is answered with
    /// `Connection: close`; a connection with input waiting is never closed under it; a
    /// silent one is closed then (within a `tick`). `shutdown_timeout` still bounds it all.
    pub fn drain_idle(mut self, d: Duration) -> Self {
        self.drain_idle = d;
        self
    }

    /// Sets how long a connection waits on a sibling worker process's socket before this
    /// process takes it (default 5 ms; see [`Config::standby_delay`]).
    pub fn standby_delay(mut self, d: Duration) -> Self {
        self.standby_delay = d;
        self
    }

    /// Enables or disables signal handling (default true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Sets the largest accepted request head in bytes (default 64 KiB).
    pub fn max_head(mut self, bytes: usize) -> Self {
        self.limits.max_head = bytes;
        self
    }

    /// Sets the most header fields a request may have (default 100; more is answered 431).
    pub fn max_headers(mut self, count: usize) -> Self {
        self.limits.max_headers = count;
        self
    }

    /// Serves the files under `dir` (method `fs`) instead of an application.
    pub fn document_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.document_root = Some(dir.into());
        self
    }

    /// With method `fs`, lists directories that have no `index.html` (default: 403).
    pub fn display_index(mut self, on: bool) -> Self {
        self.display_index = on;
        self
    }

    /// Sets how many accepted connections may wait for a worker once `max_threads` workers
    /// are busy (default 1024); past it accepting pauses. Has no effect without `max_threads`.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }

    /// Sets the largest request body accepted, in bytes (default 1 GiB); a larger one is
    /// answered with 413 before the application runs (Content-Length) or as soon as it
    /// passes the limit (chunked).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets where access lines go (default: the `log` target `skyrocket::access`); a file is
    /// opened (created if missing, appended to) by [`ConfigBuilder::build`] and reopened on
    /// every restart.
    pub fn access_log(mut self, destination: AccessLogDestination) -> Self {
        self.access_log = destination;
        self
    }

    /// Sets the fields of an access line (default: Common Log Format).
    pub fn access_log_format(mut self, format: AccessLogFormat) -> Self {
        self.access_log_format = format;
        self
    }

    /// Makes every connection begin with a PROXY protocol header of `version` (v1, v2 or
    /// either), which gives the client's address (default: none). A connection without one,
    /// or with a malformed one, is closed unanswered; connections from peers outside
    /// [`ConfigBuilder::proxy_allow_from`] are closed at once.
    pub fn proxy_protocol(mut self, version: ProxyProtocol) -> Self {
        self.proxy_protocol = Some(version);
        self
    }

    /// Sets the peers allowed to connect when the PROXY protocol is on: addresses and
    /// networks, comma-separated (`10.0.0.0/8,::1`), or `*` (default `127.0.0.1,::1`).
    pub fn proxy_allow_from(mut self, list: impl Into<String>) -> Self {
        self.proxy_allow_from = list.into();
        self
    }

    /// Sets the peers whose `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` headers are believed (written as for `proxy_allow_from`): their
    /// requests' REMOTE_ADDR, `wsgi.url_scheme` and HTTP_HOST follow those headers, and
    /// other peers' requests reach the application without them (default: nobody's are
    /// believed, and the headers are passed on as sent).
    pub fn forwarded_allow_ips(mut self, list: impl Into<String>) -> Self {
        self.forwarded_allow_ips = Some(list.into());
        self
    }

    /// Serves the Status counters at `http://ADDR/metrics` in the OpenMetrics text format
    /// Prometheus scrapes (default: no metrics endpoint). The address is bound by the first
    /// [`Start`](crate::Start) and kept for the server's life, restarts included.
    pub fn metrics(mut self, addr: impl Into<String>) -> Self {
        self.metrics = Some(addr.into());
        self
    }

    /// Serves the metrics endpoint on `socket`, already bound and listening, instead of an
    /// address (default: none).
    pub fn metrics_listener(mut self, socket: TcpListener) -> Self {
        self.metrics_listener = Some(Arc::new(socket));
        self
    }

    /// Stops gracefully after `n` responses plus a random number up to `jitter`, and exits
    /// (default 0: never), as gunicorn's `--max-requests`: with `--workers` the master starts
    /// a fresh child in its place; without it, the service manager should.
    pub fn max_requests(mut self, n: u64, jitter: u64) -> Self {
        self.max_requests = n;
        self.max_requests_jitter = jitter;
        self
    }

    /// Sets the Monitor's tick period (default 1 s); tests use small values.
    pub fn tick(mut self, d: Duration) -> Self {
        self.tick = d;
        self
    }

    /// Validates the settings and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        self.check_numbers()?;
        let interfaces = self.resolve_interfaces()?;
        let listeners = self.listening()?;
        let method = self.method()?;
        let access_log = self.open_access_log()?;
        let proxies = self.proxies()?;
        let metrics = self.metrics_socket()?;
        let recycle_after = self.recycle_after();
        Ok(Config {
            interfaces,
            listeners,
            reuse_port: self.reuse_port,
            notifier: self.notifier,
            reports_to_master: self.reports_to_master,
            method,
            min_threads: self.min_threads,
            max_threads: self.max_threads,
            queue_size: self.queue_size,
            max_queued: self.max_queued,
            timeout: self.timeout,
            read_timeout: self.read_timeout,
            shutdown_timeout: self.shutdown_timeout,
            drain_idle: self.drain_idle.min(self.timeout),
            standby_delay: self.standby_delay,
            handle_signals: self.handle_signals,
            limits: self.limits,
            max_body: self.max_body,
            tick: self.tick,
            server_name: "skyrocket".to_string(),
            access_log: Arc::new(access_log),
            proxies: Arc::new(proxies),
            metrics,
            recycle_after,
        })
    }

    /// The interfaces given (the default one if none) with their addresses resolved and
    /// their TLS files read.
    fn resolve_interfaces(&self) -> Result<Vec<Interface>, ConfigError> {
        let default = [GivenInterface {
            addr: DEFAULT_INTERFACE.to_string(),
            tls: None,
        }];
        let given = match self.interfaces.is_empty() {
            true => &default[..],
            false => &self.interfaces[..],
        };
        let mut interfaces = Vec::new();
        for iface in given {
            let addrs = resolve(&iface.addr)?;
            let tls = (iface.tls.as_ref())
                .map(|(cert, key)| self.load_tls(cert, key))
                .transpose()?;
            let with_tls = |addr| Interface {
                addr,
                tls: tls.clone(),
            };
            interfaces.extend(addrs.into_iter().map(with_tls));
        }
        Ok(interfaces)
    }

    /// The sockets given already listening, with their TLS files read.
    fn listening(&self) -> Result<Vec<Listening>, ConfigError> {
        let listening = |given: &GivenListener| {
            let tls = match &given.files {
                Some((cert, key)) => Some(self.load_tls(cert, key)?),
                None => None,
            };
            let (socket, standby) = (given.socket.clone(), given.standby);
            Ok(Listening {
                socket,
                tls,
                standby,
            })
        };
        self.listeners.iter().map(listening).collect()
    }

    /// What a TLS interface with these files serves with.
    fn load_tls(&self, cert: &Path, key: &Path) -> Result<Arc<TlsSettings>, ConfigError> {
        let policy = self.cert_reqs.unwrap_or(match self.ca_certs {
            Some(_) => ClientCerts::Optional,
            None => ClientCerts::None,
        });
        let ca_certs = self.ca_certs.as_deref();
        let settings = TlsSettings::load(cert, key, ca_certs, policy).map_err(ConfigError::Tls)?;
        Ok(Arc::new(settings))
    }

    /// `max_requests` plus its random share of the jitter; `None` when it is 0.
    fn recycle_after(&self) -> Option<u64> {
        use std::hash::{BuildHasher, RandomState};
        let random = RandomState::new().hash_one(std::process::id());
        let jitter = random % self.max_requests_jitter.saturating_add(1);
        (self.max_requests > 0).then(|| self.max_requests.saturating_add(jitter))
    }

    fn metrics_socket(&self) -> Result<Option<MetricsSocket>, ConfigError> {
        if let Some(socket) = &self.metrics_listener {
            return Ok(Some(MetricsSocket::Listening(socket.clone())));
        }
        let Some(text) = &self.metrics else {
            return Ok(None);
        };
        let first = resolve(text)?.into_iter().next();
        first
            .map(|addr| Some(MetricsSocket::Bind(addr)))
            .ok_or_else(|| ConfigError::BadAddress(text.clone()))
    }

    fn proxies(&self) -> Result<Proxies, ConfigError> {
        let list = |option, text: &str| {
            text.parse::<AllowList>()
                .map_err(|bad| ConfigError::BadAllowList(option, bad.to_string()))
        };
        let forwarded = self.forwarded_allow_ips.as_deref();
        Ok(Proxies {
            protocol: self.proxy_protocol,
            allow_from: list("proxy_allow_from", &self.proxy_allow_from)?,
            forwarded: forwarded
                .map(|text| list("forwarded_allow_ips", text))
                .transpose()?,
        })
    }

    fn open_access_log(&self) -> Result<AccessLog, ConfigError> {
        AccessLog::open(&self.access_log, self.access_log_format).map_err(|e| {
            let path = match &self.access_log {
                AccessLogDestination::File(path) => path.display().to_string(),
                _ => "-".to_string(),
            };
            ConfigError::AccessLog(path, e.to_string())
        })
    }

    fn method(&self) -> Result<Method, ConfigError> {
        match (&self.document_root, &self.app) {
            (Some(_), Some(_)) => Err(ConfigError::TwoMethods),
            (Some(dir), None) => FileServer::new(dir, self.display_index)
                .map(|files| Method::Fs(Arc::new(files)))
                .map_err(|e| ConfigError::DocumentRoot(dir.display().to_string(), e.to_string())),
            (None, app) => Ok(Method::Wsgi(
                app.clone().unwrap_or_else(|| Arc::new(crate::demo::Demo)),
            )),
        }
    }

    fn check_numbers(&self) -> Result<(), ConfigError> {
        if self.min_threads == 0 {
            return Err(ConfigError::MinThreadsZero);
        }
        if self.max_threads != 0 && self.max_threads < self.min_threads {
            return Err(ConfigError::MaxBelowMin {
                min: self.min_threads,
                max: self.max_threads,
            });
        }
        if self.queue_size == 0 {
            return Err(ConfigError::ZeroQueueSize);
        }
        let durations = [
            ("timeout", self.timeout),
            ("read_timeout", self.read_timeout),
            ("tick", self.tick),
        ];
        match durations.iter().find(|(_, d)| d.is_zero()) {
            Some((name, _)) => Err(ConfigError::ZeroDuration(name)),
            None if self.limits.max_head < 64 || self.limits.max_headers == 0 => {
                Err(ConfigError::HeadLimitTooSmall)
            }
            None => Ok(()),
        }
    }
}

/// The addresses of `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (every address the name resolves
/// to, in the resolver's order, each once).
fn resolve(text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(vec![addr]);
    }
    let bad = || ConfigError::BadAddress(text.to_string());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    // An IPv6 address goes in brackets (`::1:80` is ambiguous); `[name]` is not an address.
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(bad());
    }
    let unresolved = |why: String| ConfigError::Unresolved(text.to_string(), why);
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|e| unresolved(e.to_string()))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.is_empty() {
        true => Err(unresolved("no address".into())),
        false => Ok(addrs),
    }
}

/// A setting that cannot work, found at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `min_threads` was 0.
    MinThreadsZero,
    /// `max_threads` was below `min_threads` (and not 0).
    MaxBelowMin {
        /// The configured minimum.
        min: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The listen backlog was 0.
    ZeroQueueSize,
    /// A duration that must be positive was zero.
    ZeroDuration(&'static str),
    /// The head limit cannot hold even a minimal request.
    HeadLimitTooSmall,
    /// An interface was not `HOST:PORT` or `IP:PORT` (IPv6 as `[::1]:PORT`).
    BadAddress(String),
    /// A host name could not be resolved: the interface as given and why.
    Unresolved(String, String),
    /// Both an application and a document root were given.
    TwoMethods,
    /// The document root is not a readable directory: the path and why.
    DocumentRoot(String, String),
    /// The access log file cannot be opened for appending: the path and why.
    AccessLog(String, String),
    /// An address list (the option's name) has an element that is not an address, a
    /// network or `*`: what is wrong.
    BadAllowList(&'static str, String),
    /// A TLS interface's certificate, key or CA file cannot serve.
    Tls(TlsError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MinThreadsZero => f.write_str("min_threads must be greater than 0"),
            ConfigError::MaxBelowMin { min, max } => write!(
                f,
                "max_threads ({max}) must be 0 (no limit) or at least min_threads ({min})"
            ),
            ConfigError::ZeroQueueSize => f.write_str("queue_size must be greater than 0"),
            ConfigError::ZeroDuration(name) => write!(f, "{name} must be greater than 0"),
            ConfigError::HeadLimitTooSmall => {
                f.write_str("the head limit must be at least 64 bytes and 1 header field")
            }
            ConfigError::TwoMethods => {
                f.write_str("give an application or a document root, not both")
            }
            ConfigError::DocumentRoot(dir, why) => {
                write!(f, "document root {dir:?} cannot be served: {why}")
            }
            ConfigError::AccessLog(path, why) => {
                write!(f, "access log {path:?} cannot be opened: {why}")
            }
            ConfigError::BadAddress(text) => {
                write!(
                    f,
                    "invalid address {text:?}: expected HOST:PORT, IP:PORT or [IPv6]:PORT"
                )
            }
            ConfigError::BadAllowList(option, why) => write!(f, "{option}: {why}"),
            ConfigError::Unresolved(text, why) => {
                write!(f, "cannot resolve {text:?}: {why}")
            }
            ConfigError::Tls(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::certs;

    #[test]
    fn defaults_are_rockets() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.interfaces[0].addr, DEFAULT_INTERFACE.parse().unwrap());
        assert_eq!((c.min_threads, c.max_threads), (10, 0));
        assert_eq!(c.timeout, Duration::from_secs(600));
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.drain_idle, Duration::from_secs(1));
        assert_eq!(c.queue_size, libc::SOMAXCONN as u32);
        assert!(c.handle_signals);
        assert_eq!(c.limits.max_head, 64 * 1024);
    }

    #[test]
    fn drain_idle_is_never_longer_than_timeout() {
        let b = || Config::builder().timeout(Duration::from_millis(500));
        assert_eq!(b().build().unwrap().drain_idle, Duration::from_millis(500));
        let short = b().drain_idle(Duration::from_millis(200)).build().unwrap();
        assert_eq!(short.drain_idle, Duration::from_millis(200));
        let none = b().drain_idle(Duration::ZERO).build().unwrap();
        assert_eq!(none.drain_idle, Duration::ZERO, "silent ones close at once");
    }

    #[test]
    fn invalid_settings_are_errors() {
        let b = Config::builder;
        let table: Vec<(ConfigBuilder, ConfigError)> = vec![
            (b().min_threads(0), ConfigError::MinThreadsZero),
            (
                b().min_threads(5).max_threads(4),
                ConfigError::MaxBelowMin { min: 5, max: 4 },
            ),
            (b().queue_size(0), ConfigError::ZeroQueueSize),
            (
                b().timeout(Duration::ZERO),
                ConfigError::ZeroDuration("timeout"),
            ),
            (
                b().read_timeout(Duration::ZERO),
                ConfigError::ZeroDuration("read_timeout"),
            ),
            (b().max_head(10), ConfigError::HeadLimitTooSmall),
            (b().max_headers(0), ConfigError::HeadLimitTooSmall),
            (
                b().bind("localhost"),
                ConfigError::BadAddress("localhost".into()),
            ),
            (b().bind("::1:80"), ConfigError::BadAddress("::1:80".into())),
            (b().bind(":80"), ConfigError::BadAddress(":80".into())),
            (
                b().bind("localhost:http"),
                ConfigError::BadAddress("localhost:http".into()),
            ),
            (
                b().bind("localhost:65536"),
                ConfigError::BadAddress("localhost:65536".into()),
            ),
            (
                b().bind("[localhost]:80"),
                ConfigError::BadAddress("[localhost]:80".into()),
            ),
        ];
        for (builder, expected) in table {
            assert_eq!(builder.build().unwrap_err(), expected);
        }
    }

    #[test]
    fn a_host_name_gives_an_interface_per_address() {
        let c = Config::builder().bind("localhost:8080").build().unwrap();
        let addrs: Vec<SocketAddr> = c.interfaces.iter().map(|i| i.addr).collect();
        assert!(
            addrs.contains(&"127.0.0.1:8080".parse().unwrap()),
            "{addrs:?}"
        );
        let resolved: Vec<SocketAddr> = ("localhost", 8080).to_socket_addrs().unwrap().collect();
        assert!(addrs.iter().all(|a| resolved.contains(a)), "{addrs:?}");
        let unique = addrs
            .iter()
            .filter(|a| addrs.iter().filter(|b| b == a).count() == 1);
        assert_eq!(unique.count(), addrs.len(), "each address once: {addrs:?}");

        let err = Config::builder().bind("no-such-host.invalid:80").build();
        assert!(
            matches!(err, Err(ConfigError::Unresolved(ref text, _)) if text == "no-such-host.invalid:80"),
            "{err:?}"
        );
    }

    /// Plain and TLS interfaces in the order given; the addresses of one name share their
    /// settings, and every listening socket has its TLS configuration (or none).
    #[test]
    fn tls_interfaces_mix_with_plain_ones() {
        let dir = certs::scratch_dir("config-tls");
        let server = certs::self_signed(&dir);
        let c = Config::builder()
            .tls_bind("localhost:8443", &server.cert, &server.key)
            .bind("127.0.0.1:8000")
            .tls_bind("[::1]:8444", &server.cert, &server.key)
            .build()
            .unwrap();
        let (named, rest) = c.interfaces.split_at(c.interfaces.len() - 2);
        assert!(named
            .iter()
            .all(|i| i.addr.port() == 8443 && i.tls.is_some()));
        let first = named[0].tls.as_ref().unwrap();
        assert!(named
            .iter()
            .all(|i| Arc::ptr_eq(i.tls.as_ref().unwrap(), first)));
        assert_eq!(rest[0].addr, "127.0.0.1:8000".parse().unwrap());
        assert!(rest[0].tls.is_none() && rest[1].tls.is_some());
        let tls: Vec<bool> = (crate::server::tls_configs(&c).iter())
            .map(Option::is_some)
            .collect();
        let expected: Vec<bool> = c.interfaces.iter().map(|i| i.tls.is_some()).collect();
        assert_eq!(tls, expected);

        let only_tls = Config::builder().tls_bind("127.0.0.1:0", &server.cert, &server.key);
        let only_tls = only_tls.build().unwrap();
        assert_eq!(only_tls.interfaces.len(), 1, "no default plain interface");
        let passed = Config::builder()
            .tls_bind("127.0.0.1:0", &server.cert, &server.key)
            .listener(TcpListener::bind("127.0.0.1:0").unwrap())
            .build()
            .unwrap();
        let passed = crate::server::tls_configs(&passed);
        assert!(
            passed.len() == 1 && passed[0].is_none(),
            "socket activation stays plain"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A CA file alone asks clients optionally for a certificate (as Rocket does), checked
    /// against it; `cert_reqs` decides otherwise, and asking needs the file.
    #[test]
    fn client_certificates_follow_ca_certs_and_cert_reqs() {
        use crate::test_support::{connect_tls, tls_client};
        use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let dir = certs::scratch_dir("config-client-certs");
        let server = certs::self_signed(&dir);
        let pki = certs::client_pki(&dir);
        let b = || Config::builder().tls_bind("127.0.0.1:0", &server.cert, &server.key);
        let cases = [
            (b().ca_certs(&pki.ca), Some(&pki.client), true),
            (b().ca_certs(&pki.ca), None, false),
            (
                b().ca_certs(&pki.ca).cert_reqs(ClientCerts::None),
                Some(&pki.client),
                false,
            ),
            (
                b().ca_certs(&pki.ca).cert_reqs(ClientCerts::Required),
                Some(&pki.client),
                true,
            ),
        ];
        for (at, (builder, sent, presented)) in cases.into_iter().enumerate() {
            let config = builder.build().unwrap();
            let tls = config.interfaces[0].tls.as_ref().unwrap().server_config();
            let client = tls_client(&server.cert, sent, TLS13_AES_128_GCM_SHA256);
            let conn = connect_tls(&client, tls).expect("a handshake");
            assert_eq!(conn.peer_certificates().is_some(), presented, "case {at}");
        }
        let err = b().cert_reqs(ClientCerts::Required).build().unwrap_err();
        assert_eq!(
            err,
            ConfigError::Tls(TlsError::NoCaFile(ClientCerts::Required))
        );
        let missing = dir.join("missing-key.pem");
        let err = Config::builder()
            .tls_bind("127.0.0.1:0", &server.cert, &missing)
            .build();
        let line = err.unwrap_err().to_string();
        assert!(
            line.contains("missing-key.pem") && line.lines().count() == 1,
            "{line}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn several_interfaces_ipv4_and_ipv6() {
        let c = Config::builder()
            .bind("127.0.0.1:0")
            .bind("[::1]:0")
            .min_threads(1)
            .max_threads(1)
            .build()
            .unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert!(c.interfaces[1].addr.is_ipv6());
    }
}
