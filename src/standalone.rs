//! Running the server without an actix system of one's own: in the foreground, or on a
//! background thread (Rocket's `start(background=True)`).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;

use actix::prelude::*;

use crate::config::Config;
use crate::server::{Restart, Server, ServerError, Start, Status, Stop};
use crate::stats::StatusReport;

/// Runs the server until it is stopped (by a signal, or a `Stop` message); `on_ready` is
/// called with the bound addresses once it accepts connections.
pub fn run(config: Config, on_ready: impl FnOnce(&[SocketAddr])) -> Result<(), ServerError> {
    let system = actix::System::new();
    let (server, addrs) = system.block_on(async {
        let server = Server::new(config).exit_on_stop().start();
        let addrs = server.send(Start).await.map_err(|_| ServerError::Gone)?;
        addrs.map(|addrs| (server, addrs))
    })?;
    on_ready(&addrs);
    let ran = system.run().map_err(|_| ServerError::Gone);
    // Held until here: the last address of an actor stops it, and the Server (with the
    // sockets it owns) must live while the system runs, signals handled or not.
    drop(server);
    ran
}

/// Starts the server on a thread of its own; the handle controls it and stops it when dropped.
pub fn spawn(config: Config) -> Result<ServerHandle, ServerError> {
    let (ready, started) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("skyrocket".into())
        .spawn(move || serve_on_thread(config, ready))
        .map_err(|_| ServerError::Gone)?;
    let (server, addrs) = started.recv().map_err(|_| ServerError::Gone)??;
    Ok(ServerHandle {
        server,
        addrs,
        thread: Some(thread),
    })
}

type Started = Result<(Addr<Server>, Vec<SocketAddr>), ServerError>;

fn serve_on_thread(config: Config, ready: mpsc::Sender<Started>) {
    let system = actix::System::new();
    let started = system.block_on(async {
        let server = Server::new(config).exit_on_stop().start();
        match server.send(Start).await {
            Ok(Ok(addrs)) => Ok((server, addrs)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ServerError::Gone),
        }
    });
    let ok = started.is_ok();
    let _ = ready.send(started);
    if ok {
        let _ = system.run();
    }
}

/// A server running on its own thread.
pub struct ServerHandle {
    /// The server actor.
    server: Addr<Server>,
    /// The bound addresses.
    addrs: Vec<SocketAddr>,
    /// The server's thread, joined on stop.
    thread: Option<thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound addresses, in interface order (real ports even for port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The server actor, to send it messages from actix code.
    pub fn addr(&self) -> &Addr<Server> {
        &self.server
    }

    /// Current gauges and totals.
    pub fn status(&self) -> Result<StatusReport, ServerError> {
        block_on(self.server.send(Status)).map_err(|_| ServerError::Gone)
    }

    /// Restarts the pool, keeping the listening sockets.
    pub fn restart(&self) -> Result<(), ServerError> {
        block_on(self.server.send(Restart)).map_err(|_| ServerError::Gone)?
    }

    /// Stops the server (gracefully or not) and waits for its thread.
    pub fn stop(mut self, graceful: bool) {
        self.stop_and_join(graceful);
    }

    fn stop_and_join(&mut self, graceful: bool) {
        if let Some(thread) = self.thread.take() {
            let _ = block_on(self.server.send(Stop { graceful }));
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join(false);
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime without I/O always builds")
        .block_on(future)
}
