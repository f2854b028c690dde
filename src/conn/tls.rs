//! A TLS session over a client socket: rustls driven sans-IO over the non-blocking socket, so
//! that a handshake or a record still on its way waits in the idle set like a partial request
//! head, holding no worker.
//!
//! Reading takes what records have arrived (`read_tls`), decrypts them
//! (`process_new_packets`) and gives the plaintext; writing hands plaintext to rustls, which
//! keeps the ciphertext until the socket takes it (at most its buffer limit, 64 KiB: past it a
//! response waits as plaintext in the connection's queue). A client whose first byte is an
//! ASCII letter speaks plain HTTP to a TLS port: it is refused (the worker answers a
//! plain-text 400 in the clear and closes).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustix::net::{recv, RecvFlags};
use rustls::{ServerConfig, ServerConnection};

use super::outbox::Sink;
use crate::tls::TlsInfo;

/// The most bytes of a file read into the session at a time (a TLS record's worth).
const FILE_CHUNK: usize = 16 * 1024;

/// The most bytes of a plain HTTP request looked at (for the access log's request line).
const PLAIN_HTTP_SEEN: usize = 1024;

/// Why a TLS session cannot go on.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The client spoke plain HTTP: to be answered `ProtocolError::PlainHttpOnTls`, in the
    /// clear. The bytes are the start of its request (left unread), for the access log.
    PlainHttp(Vec<u8>),
    /// The handshake or a record failed: the client was sent an alert.
    Tls(rustls::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::PlainHttp(_) => f.write_str("plain HTTP on a TLS port"),
            Refused::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for Refused {}

/// A connection's TLS state, travelling with it between workers and the idle set.
pub(crate) struct TlsSession {
    /// rustls' state: the handshake, the keys, records read and not yet decrypted, and
    /// ciphertext not yet sent.
    conn: ServerConnection,
    /// A first byte has arrived and looked like TLS (the plain-HTTP check is made once).
    started: bool,
    /// The client was refused (plain HTTP, or a TLS error already answered with an alert):
    /// nothing more is sent through the session.
    refused: bool,
    /// What the environ says of the session (protocol, cipher, client certificate), made
    /// once after the handshake and shared by every request of the connection.
    info: Option<Arc<TlsInfo>>,
}

impl TlsSession {
    /// A session for a connection just accepted on an interface with `config`.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsSession {
            conn: ServerConnection::new(config)?,
            started: false,
            refused: false,
            info: None,
        })
    }

    /// What the environ says of the session, once the handshake is done.
    pub(crate) fn info(&mut self) -> Option<Arc<TlsInfo>> {
        if self.conn.is_handshaking() {
            return None;
        }
        let conn = &self.conn;
        Some(
            self.info
                .get_or_insert_with(|| Arc::new(TlsInfo::of(conn)))
                .clone(),
        )
    }

    /// Whether the handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Reads plaintext into `out` without waiting: `WouldBlock` when none can be had now;
    /// `Ok(0)` when the client closed. The flag says the socket's receive queue was found
    /// empty and nothing decrypted is left (the idle set will report what comes next).
    pub(crate) fn read(&mut self, tcp: &TcpStream, out: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut emptied = false;
        loop {
            match self.conn.reader().read(out) {
                Ok(n) => return Ok((n, emptied && n < out.len())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((0, true)),
                Err(e) => return Err(e),
            }
            if emptied {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            emptied = self.receive(tcp)?;
        }
    }

    /// Takes a read's worth of the records that have arrived and decrypts them; sends what
    /// the handshake answers. Whether the socket had nothing more (or was closed).
    fn receive(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        if !self.started {
            self.check_first_byte(tcp)?;
        }
        let emptied = loop {
            match self.conn.read_tls(&mut &*tcp) {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.process(tcp)?;
        Ok(emptied)
    }

    /// Decrypts the records taken, and sends what the handshake answers (an alert, if they
    /// fail).
    fn process(&mut self, tcp: &TcpStream) -> io::Result<()> {
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.flush(tcp);
            self.refused = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, Refused::Tls(e)));
        }
        self.flush(tcp).map(drop)
    }

    /// Takes records that were read from the socket before the session began (after a
    /// PROXY header, which precedes the session), and sends what the handshake answers.
    pub(crate) fn receive_read(&mut self, tcp: &TcpStream, mut records: &[u8]) -> io::Result<()> {
        if !records.is_empty() {
            self.check_first(records)?;
        }
        while !records.is_empty() {
            self.conn.read_tls(&mut records)?;
            self.process(tcp)?;
        }
        Ok(())
    }

    /// Looks at what has arrived, without taking it, to refuse plain HTTP (see
    /// [`TlsSession::check_first`]).
    fn check_first_byte(&mut self, tcp: &TcpStream) -> io::Result<()> {
        let mut seen = [0u8; PLAIN_HTTP_SEEN];
        match recv(tcp, &mut seen, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => self.check_first(&seen[..n]),
            _ => Ok(()),
        }
    }

    /// Starts the session on bytes that can begin a TLS record, or refuses a client whose
    /// first byte is an ASCII letter (a plain HTTP method): a TLS record begins with its
    /// content type (22 for a handshake).
    fn check_first(&mut self, seen: &[u8]) -> io::Result<()> {
        if !seen[0].is_ascii_alphabetic() {
            self.started = true;
            return Ok(());
        }
        self.refused = true;
        let seen = seen[..seen.len().min(PLAIN_HTTP_SEEN)].to_vec();
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            Refused::PlainHttp(seen),
        ))
    }

    /// Sends the ciphertext rustls holds, without waiting; whether all of it went.
    pub(crate) fn flush(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut &*tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether ciphertext waits for room in the socket's send buffer.
    pub(crate) fn pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// Encrypts what rustls takes of `data` (up to its buffer limit) and sends what the socket
    /// takes, without waiting; how many plaintext bytes were taken.
    pub(crate) fn write_now(&mut self, tcp: &TcpStream, data: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        while taken < data.len() {
            let n = self.conn.writer().write(&data[taken..])?;
            taken += n;
            let all_sent = self.flush(tcp)?;
            if n == 0 || !all_sent {
                break;
            }
        }
        Ok(taken)
    }

    /// Sends up to `left` bytes of `file` from its position through the session without
    /// waiting, a record's worth at a time (no `sendfile` through TLS); the file's position
    /// follows what was taken. A file that ends first is `UnexpectedEof`.
    pub(crate) fn send_file(
        &mut self,
        tcp: &TcpStream,
        file: &mut File,
        left: u64,
    ) -> io::Result<u64> {
        let mut chunk = [0u8; FILE_CHUNK];
        let mut sent = 0u64;
        while sent < left {
            let want = usize::try_from(left - sent).map_or(FILE_CHUNK, |n| n.min(FILE_CHUNK));
            let read = file.read(&mut chunk[..want])?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let taken = self.write_now(tcp, &chunk[..read])?;
            sent += taken as u64;
            if taken < read {
                file.seek(SeekFrom::Current(-((read - taken) as i64)))?;
                break;
            }
        }
        Ok(sent)
    }

    /// Tells the client the session ends (`close_notify`) and sends it if the socket takes
    /// it now.
    pub(crate) fn close(&mut self, tcp: &TcpStream) {
        if !self.refused {
            self.conn.send_close_notify();
            let _ = self.flush(tcp);
        }
    }
}

/// A TLS session over its socket, as a [`Sink`] for queued response bytes.
pub(crate) struct Encrypted<'a> {
    /// The socket.
    pub(crate) tcp: &'a TcpStream,
    /// The session that encrypts for it.
    pub(crate) session: &'a mut TlsSession,
}

impl Sink for Encrypted<'_> {
    fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.session.write_now(self.tcp, data)
    }

    fn send_file(&mut self, file: &mut File, left: u64) -> io::Result<u64> {
        self.session.send_file(self.tcp, file, left)
    }
}

#[cfg(test)]
mod tests {
    //! The session over a loopback pair, against a rustls client on a thread of its own.

    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, StreamOwned};

    use super::*;
    use crate::test_support::{certs, loopback, pair, tls_client, WAIT};
    use crate::tls::{ClientCerts, TlsSettings};

    /// The server configuration of a TLS interface for `localhost` (its files in a scratch
    /// directory named after `name`), and a client configuration that trusts it.
    fn configs(name: &str) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let files = certs::self_signed(&certs::scratch_dir(name));
        let settings = TlsSettings::load(&files.cert, &files.key, None, ClientCerts::None);
        let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let client = tls_client(&files.cert, None, suite);
        (settings.unwrap().server_config(), client)
    }

    /// The server side of a loopback pair (non-blocking) with a session, and the client side.
    fn session_pair(name: &str) -> (TlsSession, TcpStream, TcpStream, Arc<ClientConfig>) {
        let (server_config, client_config) = configs(name);
        let (client, conn) = pair(&loopback());
        conn.stream.set_nonblocking(true).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        let session = TlsSession::new(server_config).unwrap();
        (session, conn.stream, client, client_config)
    }

    /// A TLS client on a thread: sends `request`, reads to the end; what it read, or why not.
    fn client(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        request: &'static [u8],
    ) -> JoinHandle<Result<Vec<u8>, String>> {
        std::thread::spawn(move || {
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(config, name).unwrap();
            let mut tls = StreamOwned::new(conn, tcp);
            tls.write_all(request).map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            tls.read_to_end(&mut got).map_err(|e| e.to_string())?;
            Ok(got)
        })
    }

    /// Reads plaintext until `want` bytes came (polling: the socket is non-blocking).
    fn read_plain(session: &mut TlsSession, tcp: &TcpStream, want: usize) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            assert!(Instant::now() < deadline, "no plaintext in time: {got:?}");
            match session.read(tcp, &mut buf) {
                Ok((0, _)) => break,
                Ok((n, _)) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(tcp),
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn wait_readable(tcp: &TcpStream) {
        let mut fds = [rustix::event::PollFd::new(
            tcp,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec::try_from(Duration::from_millis(100)).unwrap();
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
    }

    /// Writes all of `data` through the session (polling for room).
    fn write_plain(session: &mut TlsSession, tcp: &TcpStream, mut data: &[u8]) {
        let deadline = Instant::now() + WAIT;
        while !data.is_empty() || session.pending() {
            assert!(Instant::now() < deadline, "the client took nothing in time");
            let n = session.write_now(tcp, data).unwrap();
            data = &data[n..];
            session.flush(tcp).unwrap();
        }
    }

    #[test]
    fn a_handshake_then_a_request_and_its_response_and_close_notify() {
        let (mut session, tcp, client_tcp, config) = session_pair("tls-session-exchange");
        assert!(
            matches!(
                session.read(&tcp, &mut [0u8; 16]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            "nothing has arrived: the session waits, holding nothing"
        );
        let client = client(client_tcp, config, b"GET / HTTP/1.1\r\n\r\n");
        let request = read_plain(&mut session, &tcp, 18).unwrap();
        assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!session.is_handshaking());
        write_plain(&mut session, &tcp, b"HTTP/1.1 200 OK\r\n\r\nhello");
        session.close(&tcp);
        assert_eq!(
            client.join().unwrap().unwrap(),
            b"HTTP/1.1 200 OK\r\n\r\nhello"
        );
    }

    #[test]
    fn plain_http_on_the_tls_port_is_refused_with_what_it_sent() {
        let (mut session, tcp, mut client_tcp, _) = session_pair("tls-session-plain");
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        client_tcp.write_all(request).unwrap();
        wait_readable(&tcp);
        let err = read_plain(&mut session, &tcp, 1).unwrap_err();
        let refused = err.get_ref().and_then(|e| e.downcast_ref::<Refused>());
        assert!(
            matches!(refused, Some(Refused::PlainHttp(seen)) if seen == request),
            "{err}"
        );
        session.close(&tcp);
        drop(tcp);
        let mut answer = Vec::new();
        let _ = client_tcp.read_to_end(&mut answer);
        assert_eq!(answer, b"", "the worker answers, in the clear");
    }

    #[test]
    fn garbage_gets_an_alert() {
        let (mut session, tcp, mut client_tcp, _) = session_pair("tls-session-garbage");
        // A handshake record holding a ClientHello of four bytes that mean nothing.
        let garbage = [
            0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
        ];
        client_tcp.write_all(&garbage).unwrap();
        wait_readable(&tcp);
        let err = read_plain(&mut session, &tcp, 1).unwrap_err();
        let refused = err.get_ref().and_then(|e| e.downcast_ref::<Refused>());
        assert!(matches!(refused, Some(Refused::Tls(_))), "{err}");
        drop(tcp);
        let mut answer = Vec::new();
        let _ = client_tcp.read_to_end(&mut answer);
        assert_eq!(
            answer.first(),
            Some(&0x15),
            "an alert record: {answer:?} after {err}"
        );
    }

    #[test]
    fn a_file_goes_out_a_record_at_a_time_as_the_client_reads() {
        let (mut session, tcp, client_tcp, config) = session_pair("tls-session-file");
        let client = client(client_tcp, config, b"GET /file HTTP/1.1\r\n\r\n");
        read_plain(&mut session, &tcp, 22).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("skyrocket-tls-file-{}", std::process::id()));
        std::fs::write(&path, &data).unwrap();
        let mut file = File::open(&path).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut left = data.len() as u64;
        while left > 0 || session.pending() {
            assert!(Instant::now() < deadline, "{left} bytes left");
            if session.flush(&tcp).unwrap() {
                left -= session.send_file(&tcp, &mut file, left).unwrap();
            }
        }
        session.close(&tcp);
        std::fs::remove_file(&path).unwrap();
        assert!(
            client.join().unwrap().unwrap() == data,
            "the file arrived whole and in order"
        );
    }
}
