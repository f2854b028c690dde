//! The command line shared by the `skyrocket` binary and the examples.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::access_log::{AccessLogDestination, AccessLogFormat};
use crate::app::Application;
use crate::config::{
    Config, ConfigBuilder, DEFAULT_MAX_BODY, DEFAULT_MAX_QUEUED, DEFAULT_PROXY_ALLOW_FROM,
};
use crate::http::ProxyProtocol;
use crate::master::Supervision;
use crate::systemd::{self, Notifier, PassedSocket, CHILD_FDS};
use crate::tls::ClientCerts;

/// Rocket's options as flags.
#[derive(Debug, Parser)]
#[command(
    name = "skyrocket",
    version,
    about = "A multithreaded WSGI-style HTTP/1.1 server"
)]
pub(crate) struct Cli {
    /// Address to listen on, HOST:PORT, IP:PORT or [IPv6]:PORT (repeatable; a host name binds
    /// every address it resolves to; port 0 = any free port, for each socket).
    #[arg(long = "bind", value_name = "HOST:PORT")]
    pub bind: Vec<String>,
    /// Address to listen on with TLS (HTTPS), written as --bind (repeatable); needs --certfile
    /// and --keyfile.
    #[arg(long = "tls-bind", value_name = "HOST:PORT")]
    pub tls_bind: Vec<String>,
    /// The certificate chain of the --tls-bind interfaces (PEM, the server's certificate first).
    #[arg(long, value_name = "FILE")]
    pub certfile: Option<PathBuf>,
    /// The private key of --certfile (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,
    /// CA certificates (PEM) that the --tls-bind interfaces check client certificates against.
    #[arg(long, value_name = "FILE")]
    pub ca_certs: Option<PathBuf>,
    /// Whether the --tls-bind interfaces ask clients for a certificate (default: optional with
    /// --ca-certs, as Rocket; else none).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub cert_reqs: Option<CertReqsArg>,
    /// What to serve.
    #[arg(long, value_enum, default_value_t = MethodArg::Wsgi)]
    pub method: MethodArg,
    /// A Python WSGI application, MODULE:CALLABLE (needs the `python` feature).
    #[arg(long, value_name = "MODULE:CALLABLE")]
    pub app: Option<String>,
    /// A directory put first on Python's sys.path (repeatable).
    #[arg(long, value_name = "DIR")]
    pub pythonpath: Vec<PathBuf>,
    /// The virtualenv whose packages the application uses (default: $VIRTUAL_ENV, if set).
    #[arg(long, value_name = "DIR")]
    pub virtualenv: Option<PathBuf>,
    /// Directory served by `--method fs`.
    #[arg(long, value_name = "DIR")]
    pub document_root: Option<PathBuf>,
    /// List directories without an index.html (`--method fs`).
    #[arg(long)]
    pub display_index: bool,
    /// Worker processes: a master binds the interfaces and runs N children that serve them
    /// (1: this process serves).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Stop gracefully after this many responses (0 = never), and be replaced by a fresh
    /// process (the master's, with --workers): for applications that leak memory.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests: u64,
    /// The most added at random to --max-requests, so that children do not recycle together.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests_jitter: u64,
    /// Seconds after which a worker process with a request still in the application, or
    /// silent, is reported stuck (logged, and in the metrics) (with --workers).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    pub stuck_after: Duration,
    /// Seconds after which such a stuck worker process is replaced (0 = never), as
    /// gunicorn's --timeout: a new one starts, the stuck one is stopped, and killed if it does
    /// not exit within --shutdown-timeout (with --workers).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "0")]
    pub worker_timeout: Duration,
    /// Seconds a new connection waits on another worker process's socket before this one
    /// takes it (with --workers): each owns a socket of the port's SO_REUSEPORT group, and
    /// one that is starting, stopped or stuck leaves its connections to the others.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "0.005")]
    pub standby_delay: Duration,
    /// Fewest worker threads.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_threads: usize,
    /// Most worker threads (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_threads: usize,
    /// Listen backlog (default: the system's SOMAXCONN).
    #[arg(long, value_name = "N")]
    pub queue_size: Option<u32>,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "600")]
    pub timeout: Duration,
    /// Seconds a request head may take in all, and a client may stall a body or a response.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "10")]
    pub read_timeout: Duration,
    /// Seconds a graceful stop waits for in-flight requests.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    pub shutdown_timeout: Duration,
    /// Seconds a graceful stop keeps an idle keep-alive connection open after its last
    /// response, for a request on its way (answered with Connection: close); at most --timeout.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "1")]
    pub drain_idle: Duration,
    /// Connections that may wait for a busy pool at max-threads before accepting pauses.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUED)]
    pub max_queued: usize,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: u64,
    /// Most header fields in a request head (more: 431).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_headers: usize,
    /// Set SO_REUSEPORT on the bound sockets, so that several independent servers can share
    /// a port (the kernel spreads connections between them).
    #[arg(long)]
    pub reuse_port: bool,
    /// Leave SIGTERM, SIGINT, SIGHUP and SIGUSR1 alone.
    #[arg(long)]
    pub no_signals: bool,
    /// Write access lines to FILE (reopened on SIGHUP and SIGUSR1), or to stdout with `-`
    /// (default: the log target skyrocket::access, off unless RUST_LOG turns it on).
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<PathBuf>,
    /// The fields of an access line.
    #[arg(long, value_enum, default_value_t = FormatArg::Common)]
    pub access_log_format: FormatArg,
    /// Every connection begins with HAProxy's PROXY protocol header of this version (auto:
    /// either), which gives the client's address; without a valid one it is closed.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyArg>,
    /// Peers allowed to connect with --proxy-protocol: addresses and networks,
    /// comma-separated (10.0.0.0/8,::1), or * (others are closed at once).
    #[arg(long, value_name = "LIST", default_value = DEFAULT_PROXY_ALLOW_FROM)]
    pub proxy_allow_from: String,
    /// Peers whose Forwarded and X-Forwarded-For/-Proto/-Host headers are believed (as
    /// --proxy-allow-from); other peers' requests lose those headers. Default: nobody's are
    /// believed, and they are passed on as sent.
    #[arg(long, value_name = "LIST")]
    pub forwarded_allow_ips: Option<String>,
    /// Serve the Status counters at http://HOST:PORT/metrics for Prometheus (OpenMetrics
    /// text; port 0 = any free port, logged at start-up).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
}

/// `--proxy-protocol`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProxyArg {
    /// The text header.
    V1,
    /// The binary header.
    V2,
    /// Either.
    Auto,
}

/// Why a socket passed as a TLS interface cannot be served.
const TLS_NEEDS_FILES: &str = "a passed socket named tls needs --certfile FILE and --keyfile FILE";

/// `--cert-reqs`' values: the names of Python's `ssl.CERT_*`, or their numbers, which
/// gunicorn takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CertReqsArg {
    /// Ask for no client certificate.
    #[value(alias = "0")]
    None,
    /// Ask for one; a client may send none.
    #[value(alias = "1")]
    Optional,
    /// Require one.
    #[value(alias = "2")]
    Required,
}

impl From<CertReqsArg> for ClientCerts {
    fn from(arg: CertReqsArg) -> Self {
        match arg {
            CertReqsArg::None => ClientCerts::None,
            CertReqsArg::Optional => ClientCerts::Optional,
            CertReqsArg::Required => ClientCerts::Required,
        }
    }
}

/// `--access-log-format`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// Common Log Format.
    Common,
    /// Combined Log Format: Common, then Referer and User-Agent.
    Combined,
}

/// `--method`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodArg {
    /// Run an application.
    Wsgi,
    /// Serve files from `--document-root`.
    Fs,
}

#[cfg(feature = "python")]
fn python_app(
    spec: &str,
    paths: &[PathBuf],
    virtualenv: Option<&Path>,
) -> Result<crate::python::PythonApp, String> {
    crate::python::start(virtualenv).map_err(|e| e.to_string())?;
    crate::python::PythonApp::load(spec, paths).map_err(|e| e.to_string())
}

#[cfg(not(feature = "python"))]
fn python_app(
    spec: &str,
    _paths: &[PathBuf],
    _virtualenv: Option<&Path>,
) -> Result<crate::demo::Demo, String> {
    Err(format!(
        "--app {spec}: this skyrocket was built without the `python` feature"
    ))
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a valid duration"))
}

impl Cli {
    /// `--access-log`: a file, `-` for stdout, or (absent) the log target.
    fn access_log_destination(&self) -> AccessLogDestination {
        match &self.access_log {
            None => AccessLogDestination::Log,
            Some(path) if path.as_os_str() == "-" => AccessLogDestination::Stdout,
            Some(path) => AccessLogDestination::File(path.clone()),
        }
    }

    /// `--proxy-protocol`, `--proxy-allow-from` and `--forwarded-allow-ips`.
    fn proxy_options(&self, builder: ConfigBuilder) -> ConfigBuilder {
        let mut builder = builder.proxy_allow_from(&self.proxy_allow_from);
        if let Some(version) = self.proxy_protocol {
            builder = builder.proxy_protocol(match version {
                ProxyArg::V1 => ProxyProtocol::V1,
                ProxyArg::V2 => ProxyProtocol::V2,
                ProxyArg::Auto => ProxyProtocol::Auto,
            });
        }
        match &self.forwarded_allow_ips {
            Some(list) => builder.forwarded_allow_ips(list),
            None => builder,
        }
    }

    /// A builder with the flags that decide the listening sockets: `--bind`, `--tls-bind` and
    /// its files, `--queue-size`, `--reuse-port` (all a master needs).
    fn listening(&self) -> Result<ConfigBuilder, String> {
        let mut builder = Config::builder().reuse_port(self.reuse_port);
        if let Some(n) = self.queue_size {
            builder = builder.queue_size(n);
        }
        let builder = (self.bind.iter()).fold(builder, |b, addr| b.bind(addr.clone()));
        self.tls_options(builder)
    }

    /// `--tls-bind` with `--certfile` and `--keyfile`, `--ca-certs` and `--cert-reqs`.
    fn tls_options(&self, builder: ConfigBuilder) -> Result<ConfigBuilder, String> {
        if self.tls_bind.is_empty() {
            return self.no_tls_options().map(|()| builder);
        }
        let (Some(cert), Some(key)) = (&self.certfile, &self.keyfile) else {
            return Err("--tls-bind needs --certfile FILE and --keyfile FILE".into());
        };
        let mut builder =
            (self.tls_bind.iter()).fold(builder, |b, addr| b.tls_bind(addr.clone(), cert, key));
        if let Some(ca_certs) = &self.ca_certs {
            builder = builder.ca_certs(ca_certs);
        }
        Ok(match self.cert_reqs {
            Some(policy) => builder.cert_reqs(policy.into()),
            None => builder,
        })
    }

    /// Without `--tls-bind`, the flags of TLS interfaces would say nothing: an error, so that
    /// nobody believes they serve TLS.
    fn no_tls_options(&self) -> Result<(), String> {
        let files = self.certfile.is_some() || self.keyfile.is_some();
        match files || self.ca_certs.is_some() || self.cert_reqs.is_some() {
            true => Err("--certfile, --keyfile, --ca-certs and --cert-reqs are for \
                         --tls-bind interfaces, and none is given"
                .into()),
            false => Ok(()),
        }
    }

    /// The configuration builder these flags describe.
    pub fn builder(&self) -> Result<ConfigBuilder, String> {
        let mut builder = (self.listening()?)
            .min_threads(self.min_threads)
            .max_threads(self.max_threads)
            .timeout(self.timeout)
            .read_timeout(self.read_timeout)
            .shutdown_timeout(self.shutdown_timeout)
            .drain_idle(self.drain_idle)
            .standby_delay(self.standby_delay)
            .max_body(self.max_body)
            .max_queued(self.max_queued)
            .max_headers(self.max_headers)
            .max_requests(self.max_requests, self.max_requests_jitter)
            .handle_signals(!self.no_signals)
            .access_log(self.access_log_destination())
            .access_log_format(match self.access_log_format {
                FormatArg::Common => AccessLogFormat::Common,
                FormatArg::Combined => AccessLogFormat::Combined,
            });
        builder = self.proxy_options(builder);
        if let Some(addr) = &self.metrics {
            builder = builder.metrics(addr);
        }
        if let Some(spec) = &self.app {
            builder = builder.app(python_app(
                spec,
                &self.pythonpath,
                self.virtualenv.as_deref(),
            )?);
        }
        if self.method == MethodArg::Fs {
            let Some(root) = &self.document_root else {
                return Err("--method fs needs --document-root DIR".into());
            };
            builder = builder
                .document_root(root)
                .display_index(self.display_index);
        }
        Ok(builder)
    }
}

/// What systemd handed this process: listening sockets and where to send notifications.
struct FromSystemd {
    /// Sockets of socket activation (none without it).
    sockets: Vec<PassedSocket>,
    /// They are a master's (`--workers`), which passes its own command line, `--bind` too.
    from_master: bool,
    /// `NOTIFY_SOCKET`'s notifier, if set.
    notifier: Option<Notifier>,
}

impl FromSystemd {
    /// Takes them from the environment (and removes its variables) while the process has one
    /// thread: before the application (Python) starts any.
    fn take() -> Result<FromSystemd, String> {
        let from_master = std::env::var_os(CHILD_FDS).is_some();
        systemd::take_ticket_keys()?;
        let sockets = systemd::take_listen_fds().map_err(|e| e.to_string())?;
        let notifier = Notifier::take_from_env()?;
        Ok(FromSystemd {
            sockets,
            from_master,
            notifier,
        })
    }

    /// Serves the passed sockets instead of the `--bind` and `--tls-bind` addresses (those
    /// named `tls` with `--certfile` and `--keyfile`, the others plain HTTP), and notifies
    /// systemd.
    fn apply(self, mut builder: ConfigBuilder, cli: &Cli) -> Result<ConfigBuilder, String> {
        if !self.sockets.is_empty() {
            self.log_sockets(cli);
        }
        for passed in self.sockets {
            let files = match (passed.tls(), &cli.certfile, &cli.keyfile) {
                (false, _, _) => None,
                (true, Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                (true, _, _) => return Err(TLS_NEEDS_FILES.into()),
            };
            let standby = passed.standby();
            builder = builder.passed_listener(passed.socket, files, standby);
        }
        if self.from_master {
            builder = builder.reports_to_master();
        }
        Ok(match self.notifier {
            Some(notifier) => builder.notifier(notifier),
            None => builder,
        })
    }

    /// Says at start-up which sockets are served, by name and address (and, under systemd,
    /// which flags they make void; a master's children are given its `--bind` as well).
    fn log_sockets(&self, cli: &Cli) {
        let names: Vec<String> = (self.sockets.iter())
            .map(|p| format!("{} ({})", p.name, describe(&p.socket)))
            .collect();
        let names = names.join(", ");
        if self.from_master {
            return log::info!("serving the master's sockets: {names}");
        }
        let ignored = match (cli.bind.is_empty(), cli.tls_bind.is_empty()) {
            (true, true) => "",
            (false, true) => "; --bind ignored",
            (true, false) => "; --tls-bind ignored",
            (false, false) => "; --bind and --tls-bind ignored",
        };
        log::info!("socket activation: serving {names}{ignored}");
    }
}

/// A passed socket for the log: its address.
fn describe(socket: &std::net::TcpListener) -> String {
    socket
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string())
}

/// An application given by the program, set on the builder the command line made.
type ProgramApp = Box<dyn FnOnce(ConfigBuilder) -> ConfigBuilder>;

/// Parses the command line, serves `app` (or the demo page) and returns the exit status.
pub fn main(app: Option<ProgramApp>) -> ExitCode {
    init_logging();
    let from_systemd = match FromSystemd::take() {
        Ok(from_systemd) => from_systemd,
        Err(e) => return fail(&e),
    };
    let worker_process = from_systemd.from_master;
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return fail(first_line(&e.to_string())),
    };
    if worker_process {
        // The master serves the metrics of all its children.
        cli.metrics = None;
    }
    if cli.workers > 1 && !worker_process {
        return run_master(&cli, from_systemd);
    }
    match cli.config(app, from_systemd) {
        Ok(config) => serve(config),
        Err(e) => fail(&e),
    }
}

impl Cli {
    /// The configuration this process serves: the command line's, with the program's
    /// application (unless `--method fs`), systemd's sockets, and a master to report to.
    fn config(&self, app: Option<ProgramApp>, from_systemd: FromSystemd) -> Result<Config, String> {
        let app = app.filter(|_| self.method == MethodArg::Wsgi);
        let builder = self.builder()?;
        let builder = app.map_or(builder.clone(), |with_app| with_app(builder));
        let builder = from_systemd.apply(builder, self)?;
        builder.build().map_err(|e| e.to_string())
    }
}

/// Serves `config` until it stops; the exit status.
fn serve(config: Config) -> ExitCode {
    let tls = tls_flags(&config);
    let served = crate::run(config, |addrs| announce(addrs, &tls));
    #[cfg(feature = "python")]
    crate::python::run_exit_functions();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// Binds the interfaces (or takes the sockets systemd passed) and runs `--workers` children
/// on them, which import the application: the master never does.
fn run_master(cli: &Cli, from_systemd: FromSystemd) -> ExitCode {
    let mut listening = match cli.listening() {
        Ok(builder) => builder,
        Err(e) => return fail(&e),
    };
    if let Some(addr) = &cli.metrics {
        listening = listening.metrics(addr);
    }
    let config = match from_systemd
        .apply(listening, cli)
        .and_then(|b| b.build().map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let sockets = crate::server::listening_sockets(&config);
    let metrics = crate::server::metrics_socket(&config);
    let (sockets, metrics) = match (sockets, metrics) {
        (Ok(sockets), Ok(metrics)) => (sockets, metrics),
        (Err(e), _) | (_, Err(e)) => return fail(&e.to_string()),
    };
    let addrs: Vec<SocketAddr> = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
    let (workers, bound_here) = (usize::from(cli.workers), config.listeners.is_empty());
    let grouped = (sockets.into_iter())
        .map(|socket| crate::master::group(socket, workers, config.queue_size, bound_here))
        .collect::<Result<Vec<_>, _>>();
    let sockets = match grouped {
        Ok(groups) => groups,
        Err(e) => return fail(&e.to_string()),
    };
    let supervision = cli.supervision(metrics, &config);
    announce(&addrs, &supervision.tls_sockets);
    let program = std::env::current_exe()
        .map(|exe| (exe.into_os_string(), std::env::args_os().skip(1).collect()));
    let notifier = config.notifier.clone();
    let ran =
        program.and_then(|program| crate::master::run(&sockets, program, supervision, notifier));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("worker processes: {e}")),
    }
}

/// The margin past `--shutdown-timeout` a child that was told to stop has before it is killed.
const KILL_MARGIN: Duration = Duration::from_secs(5);

impl Cli {
    /// What the master of `--workers` runs and watches for.
    fn supervision(&self, metrics: Option<std::net::TcpListener>, config: &Config) -> Supervision {
        Supervision {
            workers: usize::from(self.workers),
            stuck_after: self.stuck_after,
            worker_timeout: Some(self.worker_timeout).filter(|t| !t.is_zero()),
            kill_after: self.shutdown_timeout + KILL_MARGIN,
            metrics,
            read_timeout: self.read_timeout,
            server_name: config.server_name.clone(),
            tls_sockets: tls_flags(config),
        }
    }
}

/// Serves `app` with the command line's settings (used by examples).
pub fn main_with(app: impl Application) -> ExitCode {
    main(Some(Box::new(move |builder| builder.app(app))))
}

/// Which of the listening sockets of `config` are TLS, in their order.
fn tls_flags(config: &Config) -> Vec<bool> {
    let tls = crate::server::tls_configs(config);
    tls.iter().map(Option::is_some).collect()
}

/// Prints Rocket's start-up line with the real bound ports, a TLS socket marked with `*` as
/// Rocket marks it (`tls` says which, in the same order).
fn announce(addrs: &[SocketAddr], tls: &[bool]) {
    let list: Vec<String> = (addrs.iter().enumerate())
        .map(|(at, addr)| match tls.get(at) {
            Some(true) => format!("{addr}*"),
            _ => addr.to_string(),
        })
        .collect();
    eprintln!("Listening on sockets: {}", list.join(", "));
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text)
}

fn fail(message: &str) -> ExitCode {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    eprintln!("skyrocket: error: {message}");
    ExitCode::from(2)
}

/// `RUST_LOG` rules; unset, lifecycle messages are shown and the access log is off.
fn init_logging() {
    let default = "info,skyrocket::access=off";
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env).try_init();
}
