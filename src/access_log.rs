//! Access log lines in Common or Combined Log Format, one per answered request (refused ones
//! too): under their own `log` target by default, or as plain lines on stdout or in a file
//! that is reopened on restart (for logrotate).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use base64::Engine;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::http::{request_line, ProtocolError, RequestHead};

/// The log target of access lines, so they can be routed or silenced apart from the rest
/// (e.g. `RUST_LOG=skyrocket::access=info`).
pub(crate) const TARGET: &str = "skyrocket::access";

/// The fields of an access line, as Apache's `LogFormat` nicknames name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    /// `%h %l %u %t "%r" %>s %b`: client, `-`, user, time, request line, status, bytes.
    #[default]
    Common,
    /// The common fields, then `"%{Referer}i" "%{User-Agent}i"`.
    Combined,
}

/// Where access lines go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessLogDestination {
    /// The `log` crate, at `info` under the target `skyrocket::access` (the `skyrocket`
    /// binary leaves it off unless `RUST_LOG` turns it on).
    #[default]
    Log,
    /// Plain lines on standard output.
    Stdout,
    /// Plain lines appended to this file (created if missing), reopened on every restart
    /// (SIGHUP, SIGUSR1, `Restart`) so that a rotated log is let go.
    File(PathBuf),
}

/// What is known of the request an access line records.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    /// A parsed head: its request line, user, Referer and User-Agent.
    Head(&'a RequestHead),
    /// The bytes of a head that was refused: its request line, if it is readable.
    Refused(&'a [u8]),
}

/// One answered request, as the access log records it.
pub(crate) struct Entry<'a> {
    /// The client's address.
    pub(crate) remote: IpAddr,
    /// The request.
    pub(crate) request: Request<'a>,
    /// The response status code.
    pub(crate) status: u16,
    /// Body bytes sent.
    pub(crate) bytes: u64,
}

/// Where a server's access lines go, and in which format.
#[derive(Debug)]
pub(crate) struct AccessLog {
    /// The fields of a line.
    format: AccessLogFormat,
    /// The destination.
    sink: Sink,
    /// The last write failed: warned once, until a write succeeds again.
    failing: AtomicBool,
}

/// An open destination.
#[derive(Debug)]
enum Sink {
    /// The `log` crate.
    Log,
    /// Standard output.
    Stdout,
    /// An append-only file; the lock is taken for writing only to swap in a reopened file
    /// (every line is one `write` of an `O_APPEND` file, which needs no lock of its own).
    File {
        /// Where it is, to reopen it.
        path: PathBuf,
        /// The open file.
        file: RwLock<File>,
    },
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            format: AccessLogFormat::Common,
            sink: Sink::Log,
            failing: AtomicBool::new(false),
        }
    }
}

impl AccessLog {
    /// Opens `destination` for lines in `format`.
    pub(crate) fn open(
        destination: &AccessLogDestination,
        format: AccessLogFormat,
    ) -> io::Result<Self> {
        let sink = match destination {
            AccessLogDestination::Log => Sink::Log,
            AccessLogDestination::Stdout => Sink::Stdout,
            AccessLogDestination::File(path) => Sink::File {
                path: path.clone(),
                file: RwLock::new(open_append(path)?),
            },
        };
        Ok(AccessLog {
            format,
            sink,
            failing: AtomicBool::new(false),
        })
    }

    /// Opens the file again at its path (after logrotate moved it away); on failure the old
    /// one stays in use. Other destinations have nothing to reopen.
    pub(crate) fn reopen(&self) -> io::Result<()> {
        if let Sink::File { path, file } = &self.sink {
            let reopened = open_append(path)?;
            *file.write().unwrap_or_else(PoisonError::into_inner) = reopened;
        }
        Ok(())
    }

    /// The file written to, if the destination is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Writes the line of `entry` (if the `log` target is enabled, for [`Sink::Log`]).
    pub(crate) fn record(&self, entry: &Entry<'_>) {
        let written = match &self.sink {
            Sink::Log if log::log_enabled!(target: TARGET, log::Level::Info) => {
                log::info!(target: TARGET, "{}", self.line(entry));
                Ok(())
            }
            Sink::Log => Ok(()),
            Sink::Stdout => io::stdout().lock().write_all(self.line(entry).as_bytes()),
            Sink::File { file, .. } => {
                let line = self.line(entry);
                let file = file.read().unwrap_or_else(PoisonError::into_inner);
                (&*file).write_all(line.as_bytes())
            }
        };
        self.note(written);
    }

    /// Records a request refused with `err` (its canned answer is the body sent).
    pub(crate) fn refused(&self, remote: IpAddr, request: Request<'_>, err: &ProtocolError) {
        self.record(&Entry {
            remote,
            request,
            status: err.status().as_u16(),
            bytes: err.body().len() as u64,
        });
    }

    /// A line ending with a newline (which `log` adds itself).
    fn line(&self, entry: &Entry<'_>) -> String {
        let mut line = format_line(entry, self.format, OffsetDateTime::now_utc());
        if !matches!(self.sink, Sink::Log) {
            line.push('\n');
        }
        line
    }

    /// Warns of the first failed write of a run of them.
    fn note(&self, written: io::Result<()>) {
        match written {
            // Loaded first: a store on every line would bounce the flag's cache line
            // between the cores of every worker.
            Ok(()) if self.failing.load(Ordering::Relaxed) => {
                self.failing.store(false, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                log::warn!("cannot write the access log: {e}");
            }
            Err(_) => {}
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Formats one line (without its newline) at time `now`.
pub(crate) fn format_line(
    entry: &Entry<'_>,
    format: AccessLogFormat,
    now: OffsetDateTime,
) -> String {
    let when =
        format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    let stamp = now.format(when).unwrap_or_default();
    let head = match entry.request {
        Request::Head(head) => Some(head),
        Request::Refused(_) => None,
    };
    let user = head.and_then(basic_user).filter(|user| !user.is_empty());
    let mut line = format!("{} - ", entry.remote);
    push_field(&mut line, user.as_deref(), false);
    line.push_str(&format!(" [{stamp}] \""));
    push_request(&mut line, entry.request);
    let bytes = match entry.bytes {
        0 => "-".to_string(),
        n => n.to_string(),
    };
    line.push_str(&format!("\" {} {bytes}", entry.status));
    if format == AccessLogFormat::Combined {
        for name in ["referer", "user-agent"] {
            line.push_str(" \"");
            push_field(&mut line, head.and_then(|head| head.header(name)), true);
            line.push('"');
        }
    }
    line
}

/// A field's value, escaped, or `-` without one.
fn push_field(line: &mut String, value: Option<&[u8]>, quoted: bool) {
    match value {
        Some(value) => escape_into(line, value, quoted),
        None => line.push('-'),
    }
}

/// `%r`: the request line, or `-` when none can be read.
fn push_request(line: &mut String, request: Request<'_>) {
    let (method, target, version) = match request {
        Request::Head(head) => (head.method(), head.target(), head.version().as_str()),
        Request::Refused(bytes) => match request_line(bytes) {
            Some(seen) => (seen.method, seen.target, seen.version),
            None => return line.push('-'),
        },
    };
    line.push_str(method);
    line.push(' ');
    escape_into(line, target.as_bytes(), true);
    line.push(' ');
    escape_into(line, version.as_bytes(), true);
}

/// `%u`: the user name of `Authorization: Basic` (RFC 7617), as Apache logs it.
fn basic_user(head: &RequestHead) -> Option<Vec<u8>> {
    let value = std::str::from_utf8(head.header("authorization")?).ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let user_end = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[..user_end].to_vec())
}

/// Appends `bytes` so that a log reader cannot be misled: `"` and `\` escaped with `\`,
/// other bytes outside visible ASCII as `\xhh` (and the space too, outside quotes).
fn escape_into(line: &mut String, bytes: &[u8], quoted: bool) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                line.push('\\');
                line.push(char::from(b));
            }
            b' ' if quoted => line.push(' '),
            b if b.is_ascii_graphic() => line.push(char::from(b)),
            b => line.push_str(&format!("\\x{b:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    use crate::http::{parse_head, Limits};

    fn head(raw: &str) -> RequestHead {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, &Limits::default()).unwrap().unwrap()
    }

    fn line(request: Request<'_>, format: AccessLogFormat) -> String {
        let entry = Entry {
            remote: "10.0.0.1".parse().unwrap(),
            request,
            status: 200,
            bytes: 13,
        };
        let at = OffsetDateTime::from_unix_timestamp(971_211_336).unwrap();
        format_line(&entry, format, at)
    }

    #[test]
    fn common_log_format() {
        let get = head("GET /a?b=\"c\"' HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            line(Request::Head(&get), AccessLogFormat::Common),
            "10.0.0.1 - - [10/Oct/2000:20:55:36 +0000] \"GET /a?b=\\\"c\\\"' HTTP/1.1\" 200 13"
        );
        let empty = Entry {
            remote: "10.0.0.1".parse().unwrap(),
            request: Request::Head(&get),
            status: 304,
            bytes: 0,
        };
        let at = OffsetDateTime::from_unix_timestamp(0).unwrap();
        assert!(format_line(&empty, AccessLogFormat::Common, at).ends_with(" 304 -"));
    }

    #[test]
    fn combined_log_format_adds_referer_and_user_agent() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nReferer: http://r/?q=\"x\"\r\n\
                   User-Agent: curl/8.0 (x\\y)\r\n\r\n";
        let with = head(raw);
        assert!(
            line(Request::Head(&with), AccessLogFormat::Combined)
                .ends_with(" 200 13 \"http://r/?q=\\\"x\\\"\" \"curl/8.0 (x\\\\y)\""),
            "{}",
            line(Request::Head(&with), AccessLogFormat::Combined)
        );
        let without = head("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(line(Request::Head(&without), AccessLogFormat::Combined)
            .ends_with(" 200 13 \"-\" \"-\""));
    }

    #[test]
    fn the_user_comes_from_basic_authorization() {
        let table = [
            ("Authorization: Basic YWxpY2U6c2VjcmV0\r\n", "alice"),
            ("authorization: basic  YWxpY2U6c2VjcmV0 \r\n", "alice"),
            ("Authorization: Basic Ym9iIHNtaXRoOnB3\r\n", "bob\\x20smith"),
            (
                "Authorization: Basic w6l0w6k6cHc=\r\n",
                "\\xc3\\xa9t\\xc3\\xa9",
            ),
            ("Authorization: Basic OnB3\r\n", "-"),
            ("Authorization: Basic bm9jb2xvbg==\r\n", "-"),
            ("Authorization: Basic !!!\r\n", "-"),
            ("Authorization: Bearer YWxpY2U6c2VjcmV0\r\n", "-"),
            ("", "-"),
        ];
        for (header, user) in table {
            let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{header}\r\n");
            let get = head(&raw);
            let shown = line(Request::Head(&get), AccessLogFormat::Common);
            assert!(
                shown.starts_with(&format!("10.0.0.1 - {user} [")),
                "{header}: {shown}"
            );
        }
    }

    #[test]
    fn a_refused_request_shows_what_can_be_read_of_it() {
        let table: [(&[u8], &str); 4] = [
            (b"GET /x HTTP/2.0\r\nHost: h\r\n", "\"GET /x HTTP/2.0\""),
            (
                b"GET /x HTTP/1.1\r\nBad header\r\n\r\n",
                "\"GET /x HTTP/1.1\"",
            ),
            (b"\x16\x03\x01\x02\x00\n", "\"-\""),
            (b"GET /unfinished", "\"-\""),
        ];
        for (raw, request) in table {
            let shown = line(Request::Refused(raw), AccessLogFormat::Combined);
            assert!(
                shown.contains(&format!("] {request} 200 13 \"-\" \"-\"")),
                "{shown}"
            );
            assert!(shown.starts_with("10.0.0.1 - - ["), "{shown}");
        }
    }
}
