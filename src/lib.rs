//! skyrocket: a multithreaded, WSGI-style HTTP/1.1 server on actix actors, after web2py's Rocket.
//!
//! Listeners accept connections and send them to the Dispatcher, which hands each to a Worker
//! on a thread of its own; the Worker serves the connection's requests with blocking I/O and
//! runs the application inline, then parks the idle connection with the Monitor, which sends it
//! back when the next request arrives. The Server actor owns them all and takes `Start`,
//! `Stop`, `Restart` and `Status` messages. See `docs/architecture.md`.
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

pub mod access_log;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod dispatcher;
pub mod fs;
pub mod http;
pub mod listener;
pub mod monitor;
pub mod pool;
#[cfg(feature = "python")]
pub mod python;
pub mod server;
pub mod standalone;
pub mod stats;
pub mod worker;

pub use app::{Application, Body, Environ, Input, Reply};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use server::{Restart, Server, ServerError, Start, Status, Stop};
pub use standalone::{run, spawn, ServerHandle};
pub use stats::StatusReport;
