//! skyrocket: a multithreaded, WSGI-style HTTP/1.1 server on actix actors, after web2py's Rocket.
//!
//! Applications are plain blocking functions ([`Application`]): each request runs on a worker
//! thread of a pool that grows under load and shrinks when idle. Actors make up the control
//! plane: Listeners accept connections and send them to the Dispatcher, which admits them into
//! the pool's idle set (one epoll instance) and keeps the pool's size; the Monitor keeps time
//! (idle timeouts, the pool's tick); the [`Server`] owns them all and takes [`Start`],
//! [`Stop`], [`Restart`] and [`Status`]. A request's bytes never cross a mailbox: a free
//! worker takes a ready connection from the idle set itself, serves it with blocking I/O and
//! parks it again. One free worker per core waits on the idle set; another watches that the
//! set is never left unwatched while workers are stuck in the application. See
//! `docs/architecture.md`.
//!
//! ```no_run
//! use skyrocket::{Config, Environ, Input, Reply};
//! use http::StatusCode;
//!
//! let config = Config::builder()
//!     .bind("127.0.0.1:8000")
//!     .app(|_env: &Environ, _input: &mut Input<'_>| Reply::text(StatusCode::OK, "Hello"))
//!     .build()
//!     .unwrap();
//! skyrocket::run(config, |addrs| println!("listening on {addrs:?}")).unwrap();
//! ```
//!
//! The layers, from the bottom: `http` (the wire protocol on byte buffers), `tls` (what a TLS
//! interface is configured with, and what a handshake tells the application), `conn` (a client
//! connection and its socket), `pool` (what one generation of workers shares: the idle set and
//! the hand-off), then one module per actor (`worker`, `dispatcher`, `monitor`, `listener`,
//! `server`; `metrics`, which serves the Status counters to Prometheus; `master`, which runs
//! worker processes), and the entry points (`standalone`, [`cli`]).

// The application interface.
mod app;
pub use app::{Application, Body, Chunks, Environ, Input, Reply};

// Configuration and entry points.
mod allow_list;
pub mod cli;
mod config;
mod signals;
mod standalone;
mod systemd;
mod tls;
pub use access_log::{AccessLogDestination, AccessLogFormat};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use http::ProxyProtocol;
pub use standalone::{run, spawn, ServerHandle};
pub use tls::{ClientCerts, TlsError};

// Applications that come with the server.
mod demo;
pub mod fs;
#[cfg(feature = "python")]
pub mod python;

// The wire protocol: public only for the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod http;
#[cfg(not(feature = "fuzzing"))]
mod http;

// The data plane beneath the actors.
mod access_log;
mod conn;
mod pool;
mod stats;
pub use stats::StatusReport;

// The actors.
mod dispatcher;
mod listener;
mod master;
mod metrics;
mod monitor;
mod server;
mod worker;
pub use server::{Restart, Server, ServerError, Start, Status, Stop};

#[cfg(test)]
mod test_support;
