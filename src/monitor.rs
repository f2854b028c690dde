//! The Monitor actor: keeps time for a pool. Every tick it closes connections idle longer
//! than `timeout`, answers 408 to requests that did not arrive in time, resets responses left
//! unread, and sends `Tick` to the Dispatcher; while the pool drains (graceful stop) it also
//! closes the keep-alive connections that stayed silent for `drain_idle`; on restart it hands
//! every waiting connection over to the next pool.
//!
//! The waiting itself needs no thread per connection: connections wait in the pool's idle
//! set, one epoll instance that free workers wait on.

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::access_log::Request;
use crate::conn::{reset, Connection};
use crate::dispatcher::Tick;
use crate::http::{error_response, ProtocolError};
use crate::pool::Pool;

/// The pool drains (graceful stop): from now on, every tick also closes, with a FIN, the
/// served connections parked silent for `drain_idle`. Those with input waiting, partial
/// requests and unsent responses stay for the workers (and the usual expiries); connections
/// never served yet stay for the draining workers.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Draining;

/// Stops the Monitor: the end of a stop (the Dispatcher's `Shutdown` closes what is left).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Halt;

/// Takes every waiting connection, with whether it was never served, and stops the Monitor
/// (restart: they move to the next pool).
#[derive(Message)]
#[rtype(result = "Vec<(Connection, bool)>")]
pub(crate) struct Handover;

/// Expires idle connections and ticks.
pub(crate) struct Monitor {
    /// The pool whose idle set is watched.
    pool: Arc<Pool>,
    /// How long a connection may stay idle.
    timeout: Duration,
    /// How long a served connection may stay silent once the pool drains.
    drain_idle: Duration,
    /// The pool drains: silent connections are closed after `drain_idle`.
    draining: bool,
    /// The tick period.
    tick: Duration,
    /// Where ticks go.
    ticks: Recipient<Tick>,
}

impl Monitor {
    /// A Monitor closing connections idle for `timeout` (`drain_idle` once the pool drains)
    /// and ticking every `tick`.
    pub(crate) fn new(
        pool: Arc<Pool>,
        timeout: Duration,
        drain_idle: Duration,
        tick: Duration,
        ticks: Recipient<Tick>,
    ) -> Self {
        Monitor {
            pool,
            timeout,
            drain_idle,
            draining: false,
            tick,
            ticks,
        }
    }

    fn on_tick(&mut self) {
        self.expire();
        if self.draining {
            self.close_silent();
        }
        self.ticks.do_send(Tick);
    }

    /// Closes what was parked too long: idle connections, late heads, unread responses.
    fn expire(&self) {
        for (conn, _) in self.pool.idle.expire(self.timeout) {
            match (&conn.outbox, conn.request_deadline) {
                (Some(_), _) => give_up_sending(conn),
                (None, Some(_)) if conn.proxy.is_some() => {
                    log::debug!("{}: PROXY header incomplete in time; closing", conn.peer)
                }
                (None, Some(_))
                    if conn
                        .tls_session
                        .as_ref()
                        .is_some_and(|t| t.is_handshaking()) =>
                {
                    log::debug!("{}: TLS handshake incomplete in time; closing", conn.peer)
                }
                (None, Some(_)) => self.time_out(conn),
                (None, None) => log::debug!("{}: idle for {:?}; closing", conn.peer, self.timeout),
            }
        }
    }

    /// Closes, with a FIN, the served connections parked silent for `drain_idle`: nothing is
    /// unread on them, so the close sends no reset.
    fn close_silent(&self) {
        for conn in self.pool.idle.take_silent(self.drain_idle) {
            let grace = self.drain_idle;
            log::debug!(
                "{}: silent for {grace:?} while draining; closing",
                conn.peer
            );
            let _ = conn.stream.shutdown(Shutdown::Write);
        }
    }

    /// Answers a head that did not arrive in time with 408 (if the socket takes it at once)
    /// and closes.
    fn time_out(&self, mut conn: Connection) {
        log::debug!("{}: request head incomplete in time; closing", conn.peer);
        let settings = &self.pool.settings;
        let request = match &conn.head {
            Some(head) => Request::Head(head),
            None => Request::Refused(&conn.buffered),
        };
        let timeout = ProtocolError::RequestTimeout;
        (settings.access_log).refused(conn.peer.ip(), request, &timeout);
        let response = error_response(&timeout, &settings.server_name);
        match &mut conn.tls_session {
            Some(tls) => {
                let _ = tls.write_now(&conn.stream, &response);
                tls.close(&conn.stream);
            }
            None => {
                let _ = (&conn.stream).write(&response);
            }
        }
        let _ = conn.stream.shutdown(Shutdown::Write);
    }
}

/// Resets a connection whose client stopped reading its response.
fn give_up_sending(conn: Connection) {
    log::debug!("{}: response not read in time; resetting", conn.peer);
    reset(&conn.stream);
}

impl Actor for Monitor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |monitor, _| monitor.on_tick());
    }
}

impl actix::Handler<Draining> for Monitor {
    type Result = ();

    fn handle(&mut self, _: Draining, _ctx: &mut Self::Context) {
        self.draining = true;
        self.close_silent();
    }
}

impl actix::Handler<Halt> for Monitor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl actix::Handler<Handover> for Monitor {
    type Result = MessageResult<Handover>;

    fn handle(&mut self, _: Handover, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        MessageResult(self.pool.idle.take_all())
    }
}

#[cfg(test)]
mod tests {
    //! The Monitor of a pool driven by no worker, ticking into a channel.

    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    use super::*;
    use tokio::sync::mpsc::UnboundedReceiver;

    use crate::conn::Outbox;
    use crate::stats::{Gauge, Stats};
    use crate::test_support::*;

    /// The drain's grace in these tests.
    const DRAIN_IDLE: Duration = SHORT_TIMEOUT;

    /// A Monitor of a fresh pool, ticking into a channel.
    struct Watch {
        addr: Addr<Monitor>,
        pool: Arc<Pool>,
        stats: Arc<Stats>,
        ticks: UnboundedReceiver<Instant>,
        listener: TcpListener,
    }

    impl Watch {
        fn start(timeout: Duration) -> Watch {
            let (pool, stats) = new_pool(TICK);
            let (to, ticks) = tick_recipient();
            let addr = Monitor::new(pool.clone(), timeout, DRAIN_IDLE, TICK, to).start();
            Watch {
                addr,
                pool,
                stats,
                ticks,
                listener: loopback(),
            }
        }

        /// Parks a new connection, fresh or idle; the client side.
        fn park(&self, fresh: bool) -> TcpStream {
            let (client, conn) = pair(&self.listener);
            self.pool.idle.admit(conn, fresh).unwrap();
            client
        }
    }

    impl Watch {
        /// Parks a connection that was served before, after `shape` set what it carries.
        fn park_with(
            &self,
            client: &TcpListener,
            shape: impl FnOnce(&mut Connection),
        ) -> TcpStream {
            let (client, mut conn) = pair(client);
            conn.stream.set_nonblocking(true).unwrap();
            conn.nonblocking = true;
            shape(&mut conn);
            self.pool.idle.admit(conn, false).unwrap();
            client
        }
    }

    #[actix::test]
    async fn answers_408_to_a_partial_request_past_its_deadline() {
        let watch = Watch::start(LONG_TIMEOUT);
        let mut client = watch.park_with(&watch.listener, |conn| {
            conn.request_deadline = Some(Instant::now());
        });
        let answer = tokio::task::spawn_blocking(move || {
            let mut answer = String::new();
            let _ = client.read_to_string(&mut answer);
            answer
        });
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        assert!(watch.pool.idle.is_empty());
    }

    #[actix::test]
    async fn closes_unanswered_a_partial_proxy_header_past_its_deadline() {
        let watch = Watch::start(LONG_TIMEOUT);
        let mut client = watch.park_with(&watch.listener, |conn| {
            conn.proxy = Some(crate::http::ProxyProtocol::V1);
            conn.request_deadline = Some(Instant::now());
        });
        let answer = tokio::task::spawn_blocking(move || {
            let mut answer = String::new();
            let _ = client.read_to_string(&mut answer);
            answer
        });
        assert_eq!(answer.await.unwrap(), "");
        assert!(watch.pool.idle.is_empty());
    }

    #[actix::test]
    async fn leaves_a_late_partial_request_whose_input_waits_to_a_worker() {
        let mut watch = Watch::start(LONG_TIMEOUT);
        let mut client = watch.park_with(&watch.listener, |conn| {
            conn.request_deadline = Some(Instant::now());
        });
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let before = next(&mut watch.ticks).await;
        while next(&mut watch.ticks).await < before + 2 * TICK {}
        assert_eq!(
            watch.pool.idle.len(),
            1,
            "not expired: a worker will judge it"
        );
    }

    /// A client whose server side cannot send more: its receive window and the server's send
    /// buffer are full.
    fn fill_until_blocked(conn: &mut Connection) {
        let chunk = vec![0u8; 64 * 1024];
        while conn.stream.write(&chunk).is_ok() {}
    }

    #[actix::test]
    async fn resets_a_response_left_unread_past_its_deadline() {
        let watch = Watch::start(LONG_TIMEOUT);
        let mut client = watch.park_with(&watch.listener, |conn| {
            fill_until_blocked(conn);
            conn.outbox = Some(Box::new(Outbox::new(true, Duration::ZERO)));
        });
        wait_until_async("the unread response is given up", || {
            watch.pool.idle.is_empty()
        })
        .await;
        let ended = tokio::task::spawn_blocking(move || {
            let mut sink = Vec::new();
            client.read_to_end(&mut sink)
        });
        let ended = ended.await.unwrap();
        assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }

    #[actix::test]
    async fn ticks_periodically() {
        let mut watch = Watch::start(LONG_TIMEOUT);
        let started = Instant::now();
        for _ in 0..3 {
            next(&mut watch.ticks).await;
        }
        assert!(started.elapsed() >= 2 * TICK, "ticks are spaced out");
    }

    #[actix::test]
    async fn closes_a_connection_idle_longer_than_timeout() {
        let watch = Watch::start(SHORT_TIMEOUT);
        let parked_at = Instant::now();
        let client = watch.park(false);
        assert_eq!(watch.stats.get(Gauge::Idle), 1);

        assert_closed_async(client).await;
        assert!(
            parked_at.elapsed() >= SHORT_TIMEOUT,
            "closed before the timeout"
        );
        assert_eq!(watch.stats.get(Gauge::Idle), 0);
        assert!(watch.pool.idle.is_empty());
    }

    #[actix::test]
    async fn draining_closes_a_silent_connection_after_the_grace_with_a_fin() {
        let watch = Watch::start(LONG_TIMEOUT);
        let parked_at = Instant::now();
        let silent = watch.park(false);
        watch.addr.send(Draining).await.unwrap();

        assert_closed_async(silent).await; // EOF: a FIN, not a reset
        assert!(parked_at.elapsed() >= DRAIN_IDLE, "closed before the grace");
        assert!(watch.pool.idle.is_empty());
        assert_eq!(watch.stats.get(Gauge::Idle), 0);
    }

    #[actix::test]
    async fn draining_leaves_a_connection_with_input_and_a_fresh_one_to_the_workers() {
        let mut watch = Watch::start(LONG_TIMEOUT);
        let mut talking = watch.park(false);
        let _fresh = watch.park(true);
        talking.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        watch.addr.send(Draining).await.unwrap();

        let since = Instant::now();
        while next(&mut watch.ticks).await < since + DRAIN_IDLE + 2 * TICK {}
        assert_eq!(watch.pool.idle.len(), 2, "ticking on, neither closed");

        // A worker takes the one with input.
        let conn = take(&watch.pool.idle, WAIT).expect("still watched");
        assert_eq!(conn.peer.port(), port(&talking));
    }

    #[actix::test]
    async fn halt_stops_the_monitor_and_leaves_parked_connections_to_shutdown() {
        let watch = Watch::start(LONG_TIMEOUT);
        let _fresh = watch.park(true);
        let _idle = watch.park(false);
        watch.addr.send(Halt).await.unwrap();
        wait_until_async("the monitor stops", || !watch.addr.connected()).await;
        assert_eq!((watch.pool.idle.len(), watch.pool.idle.fresh()), (2, 1));
    }

    #[actix::test]
    async fn handover_returns_every_parked_connection_with_its_freshness_and_stops() {
        let watch = Watch::start(LONG_TIMEOUT);
        let mut fresh = watch.park(true);
        let mut idle = watch.park(false);

        let mut handed = watch.addr.send(Handover).await.unwrap();
        handed.sort_by_key(|(c, _)| c.peer.port() != port(&fresh));
        let got: Vec<(u16, bool)> = handed.iter().map(|(c, f)| (c.peer.port(), *f)).collect();
        assert_eq!(got, vec![(port(&fresh), true), (port(&idle), false)]);
        assert!(watch.pool.idle.is_empty());
        assert_eq!(watch.stats.get(Gauge::Queued), 0);
        assert_eq!(watch.stats.get(Gauge::Idle), 0);
        wait_until_async("the monitor stops", || !watch.addr.connected()).await;

        // The connections are open and usable.
        for ((conn, _), client) in handed.iter_mut().zip([&mut fresh, &mut idle]) {
            conn.stream.write_all(b"hi").unwrap();
            let mut got = [0u8; 2];
            client.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");
        }
    }
}
