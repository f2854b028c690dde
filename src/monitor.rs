//! The Monitor actor: watches idle keep-alive connections without a thread each, sends them
//! back to the Dispatcher when a request arrives, closes them after `timeout`, and ticks.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::dispatcher::{Connection, Tick};
use crate::stats::{Gauge, Stats};

/// An idle keep-alive connection to watch (from a Worker).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Park(pub Connection);

/// Closes every watched connection and stops the Monitor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// Watches idle connections on its arbiter's event loop.
pub struct Monitor {
    /// How long a connection may stay idle.
    timeout: Duration,
    /// The tick period.
    tick: Duration,
    /// Where readable connections go.
    dispatcher: Recipient<Connection>,
    /// Where ticks go.
    ticks: Recipient<Tick>,
    /// The watch of each parked connection, to cancel on `Close`.
    parked: HashMap<u64, SpawnHandle>,
    /// The next parked connection's key.
    next_key: u64,
    /// Shared gauges.
    stats: Arc<Stats>,
}

impl Monitor {
    /// A Monitor closing connections idle for `timeout` and ticking every `tick`.
    pub fn new(
        timeout: Duration,
        tick: Duration,
        dispatcher: Recipient<Connection>,
        ticks: Recipient<Tick>,
        stats: Arc<Stats>,
    ) -> Self {
        Monitor {
            timeout,
            tick,
            dispatcher,
            ticks,
            parked: HashMap::new(),
            next_key: 0,
            stats,
        }
    }

    fn forget(&mut self, key: u64) {
        if self.parked.remove(&key).is_some() {
            self.stats.dec(Gauge::Idle);
        }
    }
}

impl Actor for Monitor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |monitor, _| monitor.ticks.do_send(Tick));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for _ in self.parked.drain() {
            self.stats.dec(Gauge::Idle);
        }
    }
}

impl actix::Handler<Park> for Monitor {
    type Result = ();

    fn handle(&mut self, Park(conn): Park, ctx: &mut Self::Context) {
        let key = self.next_key;
        self.next_key += 1;
        let watch =
            wait_readable(conn, self.timeout)
                .into_actor(self)
                .map(move |woke, monitor, _| {
                    monitor.forget(key);
                    match woke {
                        Ok(conn) => monitor.dispatcher.do_send(conn),
                        Err(why) => log::debug!("idle connection closed: {why}"),
                    }
                });
        self.parked.insert(key, ctx.spawn(watch));
        self.stats.inc(Gauge::Idle);
    }
}

impl actix::Handler<Close> for Monitor {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        for (_, watch) in self.parked.drain() {
            ctx.cancel_future(watch);
            self.stats.dec(Gauge::Idle);
        }
        ctx.stop();
    }
}

/// Waits until `conn` has bytes (read into its buffer) or `timeout` passes; the error says why
/// the connection is done.
async fn wait_readable(conn: Connection, timeout: Duration) -> io::Result<Connection> {
    let Connection {
        stream,
        peer,
        local,
        mut buffered,
    } = conn;
    stream.set_nonblocking(true)?;
    let stream = tokio::net::TcpStream::from_std(stream)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "keep-alive timeout"))??;
        let mut chunk = [0u8; 2048];
        match stream.try_read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed",
                ))
            }
            Ok(n) => {
                buffered.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(Connection {
        stream,
        peer,
        local,
        buffered,
    })
}
