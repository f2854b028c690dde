//! The Metrics actor: serves the Server's `Status` counters over HTTP (`GET /metrics`) in the
//! OpenMetrics text format, for Prometheus and the scrapers operators already run.
//!
//! It lives on the Server's arbiter for the Server's whole life (across restarts, and while
//! stopped, when it reports `skyrocket_up 0`), on a listening socket of its own, apart from
//! the data plane: a scrape never takes a worker. Each scrape is one request on its own
//! connection, read within a deadline and answered with `Connection: close`; at most
//! [`MAX_SCRAPES`] are served at once, and connections past that are closed at accept.

mod exposition;

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use bytes::BytesMut;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{encode_head, error_response, parse_head, Limits, ProtocolError};
use crate::http::{RequestHead, ResponseFraming};
use crate::stats::StatusReport;

/// The most scrapes served at once.
pub(crate) const MAX_SCRAPES: usize = 16;

/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The most bytes a scrape's request head may have.
const MAX_HEAD: usize = 8 * 1024;

/// Asks for the counters a scrape exposes: the Server answers with its own, a master with
/// one sample per worker process.
#[derive(Message)]
#[rtype(result = "Vec<Sample>")]
pub(crate) struct Collect;

/// The counters of one process.
pub(crate) struct Sample {
    /// The worker process they come from (the `pid` label), when a master collected them.
    pub(crate) child: Option<u32>,
    /// Whether the master takes that process for stuck (`--stuck-after`).
    pub(crate) stuck: bool,
    /// The counters.
    pub(crate) report: StatusReport,
}

/// Serves the metrics endpoint.
pub(crate) struct Metrics {
    /// The listening socket (non-blocking), until the actor starts serving it.
    socket: Option<TcpListener>,
    /// Shared by the scrapes the actor serves.
    scrape: Rc<Scrape>,
}

/// What every scrape needs.
struct Scrape {
    /// Where the counters come from: the Server, or a master (a test stands in for them).
    source: Recipient<Collect>,
    /// How long a scraper may take to send its request, and to take the answer.
    deadline: Duration,
    /// The `Server` header value.
    server_name: String,
    /// Scrapes being served, bounded by [`MAX_SCRAPES`].
    serving: Cell<usize>,
}

impl Metrics {
    /// A Metrics actor on `socket` (listening, non-blocking), asking `source` for counters.
    pub(crate) fn new(
        socket: TcpListener,
        source: Recipient<Collect>,
        deadline: Duration,
        server_name: String,
    ) -> Self {
        let scrape = Scrape {
            source,
            deadline,
            server_name,
            serving: Cell::new(0),
        };
        Metrics {
            socket: Some(socket),
            scrape: Rc::new(scrape),
        }
    }
}

impl Actor for Metrics {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(socket) = self.socket.take() else {
            return;
        };
        match tokio::net::TcpListener::from_std(socket) {
            Ok(listener) => {
                ctx.spawn(accept(listener, self.scrape.clone()).into_actor(self));
            }
            Err(e) => {
                log::error!("cannot serve the metrics socket: {e}");
                ctx.stop();
            }
        }
    }
}

/// Accepts scrapes and serves each on a task of its own.
async fn accept(listener: tokio::net::TcpListener, scrape: Rc<Scrape>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                log::warn!("metrics: accept failed: {e}; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if scrape.serving.get() >= MAX_SCRAPES {
            log::debug!("{peer}: {MAX_SCRAPES} metrics scrapes already served; closed");
            continue;
        }
        scrape.serving.set(scrape.serving.get() + 1);
        let scrape = scrape.clone();
        actix_rt::spawn(async move {
            scrape.serve(stream, peer).await;
            scrape.serving.set(scrape.serving.get() - 1);
        });
    }
}

/// Why a scrape's request was not read.
enum Unread {
    /// The scraper closed, or its socket failed: nothing to answer.
    Closed,
    /// The request is invalid: answer the error.
    Invalid(ProtocolError),
}

impl Scrape {
    /// Reads one request from `stream` and answers it; every step within the deadline.
    async fn serve(&self, mut stream: TcpStream, peer: SocketAddr) {
        let read = tokio::time::timeout(self.deadline, read_head(&mut stream)).await;
        let answer = match read {
            Ok(Ok(head)) => self.answer(&head).await,
            Ok(Err(Unread::Closed)) => return,
            Ok(Err(Unread::Invalid(e))) => {
                log::debug!("{peer}: bad metrics request: {e}");
                error_response(&e, &self.server_name)
            }
            Err(_late) => error_response(&ProtocolError::RequestTimeout, &self.server_name),
        };
        let written = tokio::time::timeout(self.deadline, stream.write_all(&answer)).await;
        if !matches!(written, Ok(Ok(()))) {
            log::debug!("{peer}: metrics answer not delivered");
        }
    }

    /// The response to a parsed request: the exposition for `GET` or `HEAD /metrics`.
    async fn answer(&self, head: &RequestHead) -> Vec<u8> {
        let mut headers = HeaderMap::new();
        let (status, body) = match (head.method(), head.path()) {
            (_, path) if path != "/metrics" => (StatusCode::NOT_FOUND, "Not Found\n".into()),
            ("GET" | "HEAD", _) => self.exposition(&mut headers).await,
            _ => {
                headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method Not Allowed\n".into(),
                )
            }
        };
        if !headers.contains_key(CONTENT_TYPE) {
            let text = HeaderValue::from_static("text/plain; charset=utf-8");
            headers.insert(CONTENT_TYPE, text);
        }
        let mut out = Vec::with_capacity(256 + body.len());
        let framing = ResponseFraming::Length(body.len() as u64);
        let version = head.version();
        encode_head(
            &mut out,
            status,
            &headers,
            framing,
            false,
            version,
            &self.server_name,
        );
        if !head.is_head_method() {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }

    /// Asks for the counters and writes them out; 503 if the Server does not answer in time
    /// (it answers nothing while it drains for a graceful `Stop`).
    async fn exposition(&self, headers: &mut HeaderMap) -> (StatusCode, String) {
        let unavailable = || {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable\n".into(),
            )
        };
        let asked = tokio::time::timeout(self.deadline, self.source.send(Collect)).await;
        let Ok(Ok(samples)) = asked else {
            return unavailable();
        };
        match exposition::exposition(&samples) {
            Ok(text) => {
                let kind = HeaderValue::from_static(exposition::CONTENT_TYPE);
                headers.insert(CONTENT_TYPE, kind);
                (StatusCode::OK, text)
            }
            Err(_) => unavailable(),
        }
    }
}

/// Reads bytes until they hold a whole request head.
async fn read_head(stream: &mut TcpStream) -> Result<RequestHead, Unread> {
    let limits = Limits {
        max_head: MAX_HEAD,
        ..Limits::default()
    };
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(Unread::Closed),
            Ok(_) => {}
        }
        match parse_head(&mut buf, &limits) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => return Err(Unread::Invalid(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StatusReport;
    use std::io::{Read, Write};

    /// Stands in for the Server: answers `Collect` with a fixed report.
    struct FakeServer(StatusReport);

    impl Actor for FakeServer {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<Collect> for FakeServer {
        type Result = MessageResult<Collect>;

        fn handle(&mut self, _: Collect, _: &mut Self::Context) -> Self::Result {
            MessageResult(exposition::alone(self.0))
        }
    }

    /// Stands in for a Server that never answers `Collect` (busy draining).
    struct SilentServer;

    impl Actor for SilentServer {
        type Context = actix::Context<Self>;
    }

    impl actix::Handler<Collect> for SilentServer {
        type Result = ResponseFuture<Vec<Sample>>;

        fn handle(&mut self, _: Collect, _: &mut Self::Context) -> Self::Result {
            Box::pin(std::future::pending())
        }
    }

    /// A Metrics actor asking a fake Server; its address.
    fn start(deadline: Duration) -> SocketAddr {
        let fake = FakeServer(crate::stats::SAMPLE_REPORT).start().recipient();
        start_asking(fake, deadline)
    }

    fn start_asking(source: Recipient<Collect>, deadline: Duration) -> SocketAddr {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        Metrics::new(socket, source, deadline, "test".into()).start();
        addr
    }

    fn client(addr: SocketAddr) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Everything the endpoint sends for `raw`, until it closes.
    async fn exchange(addr: SocketAddr, raw: &'static [u8]) -> String {
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = client(addr);
            stream.write_all(raw).unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).into_owned()
        });
        answer.await.unwrap()
    }

    #[actix::test]
    async fn get_metrics_is_the_exposition_of_the_servers_status() {
        let addr = start(Duration::from_secs(10));
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains(&format!("content-type: {}\r\n", exposition::CONTENT_TYPE)));
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(
            answer.contains("\nskyrocket_requests_total 1234\n"),
            "{answer}"
        );
        assert!(answer.ends_with("# EOF\n"), "{answer}");
    }

    #[actix::test]
    async fn head_has_the_length_and_no_body() {
        let addr = start(Duration::from_secs(10));
        let answer = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("content-length: "), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    }

    #[actix::test]
    async fn other_requests_get_a_short_error() {
        let addr = start(Duration::from_secs(10));
        let cases: [(&'static [u8], &str); 4] = [
            (b"GET / HTTP/1.1\r\nHost: m\r\n\r\n", "HTTP/1.1 404 "),
            (
                b"POST /metrics HTTP/1.1\r\nHost: m\r\n\r\n",
                "HTTP/1.1 405 ",
            ),
            (
                b"GET /metrics HTTP/1.1\r\nHost: m\r\nX: a\nY: b\r\n\r\n",
                "HTTP/1.1 400 ",
            ),
            (b"GET /metrics HTTP/7.0\r\n\r\n", "HTTP/1.1 505 "),
        ];
        for (raw, status) in cases {
            let answer = exchange(addr, raw).await;
            assert!(answer.starts_with(status), "{raw:?}: {answer}");
            assert!(!answer.contains("skyrocket_"), "{raw:?}: {answer}");
        }
        let answer = exchange(addr, b"PUT /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
        assert!(answer.contains("allow: GET, HEAD\r\n"), "{answer}");
    }

    #[actix::test]
    async fn a_server_that_does_not_answer_in_time_is_unavailable() {
        let addr = start_asking(SilentServer.start().recipient(), Duration::from_millis(100));
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    }

    #[actix::test]
    async fn a_request_not_sent_in_time_is_answered_408() {
        let addr = start(Duration::from_millis(100));
        let answer = exchange(addr, b"GET /metr").await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[actix::test]
    async fn scrapes_past_the_limit_are_closed_and_a_finished_one_frees_its_place() {
        let addr = start(Duration::from_secs(10));
        let silent: Vec<_> = (0..MAX_SCRAPES).map(|_| client(addr)).collect();
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
        assert_eq!(answer, "", "closed at accept");
        drop(silent);
        for _ in 0..100 {
            let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n").await;
            if answer.starts_with("HTTP/1.1 200 ") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no place freed after the silent scrapers left");
    }
}
