//! Response heads, chunk encoding and canned error responses (RFC 9112 §4,
//! §6, §7.1).
//!
//! The server owns framing and connection management: it decides
//! `Content-Length` / `Transfer-Encoding` and `Connection`, and drops those
//! headers, and the other hop-by-hop ones, from what the application set.
//! Everything is written into a caller-provided `Vec<u8>` with no other
//! allocation.
//!
//! Header names go out in lower case, the server's own as the application's
//! (an `http::HeaderMap` keeps names in lower case anyway; HTTP/1.1 names are
//! case-insensitive, RFC 9110 §5.1), and values without the whitespace
//! around them (RFC 9110 §5.5: it is not part of the value).

use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, SERVER, TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::date::http_date;
use super::error::ProtocolError;
use super::head::{trim_ows, Version};

/// The interim response sent before reading a body the client announced
/// with `Expect: 100-continue`.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The last chunk and empty trailer section that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`. Also used for a HEAD response, to advertise the
    /// length a GET would have; the caller then writes no body.
    Length(u64),
    /// `Transfer-Encoding: chunked`: the body is sent with [`encode_chunk`]
    /// and ended with [`LAST_CHUNK`].
    Chunked,
    /// No length header; the body ends when the connection closes (HTTP/1.0
    /// peers with a body of unknown length).
    Close,
    /// No length header and no body: for 1xx, 204 and 304 responses.
    Empty,
}

impl ResponseFraming {
    /// Chooses the framing of a response that has a body: a known length is
    /// sent as `Length(n)`; an unknown one is chunked for HTTP/1.1 and
    /// delimited by closing the connection for HTTP/1.0.
    ///
    /// The caller picks `Empty` itself for 1xx, 204 and 304 responses, and
    /// for a HEAD request passes `Length(n)` when it knows the length.
    pub fn choose(version: Version, known_len: Option<u64>) -> Self {
        match (known_len, version) {
            (Some(len), _) => Self::Length(len),
            (None, Version::Http11) => Self::Chunked,
            (None, Version::Http10) => Self::Close,
        }
    }
}

/// The `Content-Length` an application put in its headers, if any and valid (surrounding
/// whitespace aside). The server does not send it: it tells a stream's length, or a HEAD's.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes a response head into `dst`.
///
/// In order: the status line (always `HTTP/1.1`, the server's highest
/// version, RFC 9110 §6.2), the application's headers except
/// `Content-Length`, `Transfer-Encoding`, `Connection` and the other
/// hop-by-hop headers (the server owns framing and connection management),
/// `Date` and `Server` unless the application set them (`Server` is also
/// skipped when `server` is empty), the framing header (`Content-Length: n`
/// or `Transfer-Encoding: chunked`; none for `Close` and `Empty`),
/// `Connection: close` when `!keep_alive` or the framing is `Close`
/// (`Connection: keep-alive` when keeping an HTTP/1.0 connection alive), then
/// the empty line. Every name is written in lower case.
pub fn encode_head(
    dst: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    keep_alive: bool,
    version: Version,
    server: &str,
) {
    encode_status_line(dst, status);
    encode_app_headers(dst, headers);
    if !headers.contains_key(DATE) {
        put_header(dst, b"date", &http_date());
    }
    if !server.is_empty() && !headers.contains_key(SERVER) {
        put_header(dst, b"server", server.as_bytes());
    }
    encode_framing(dst, framing);
    encode_connection(
        dst,
        keep_alive && framing != ResponseFraming::Close,
        version,
    );
    dst.extend_from_slice(b"\r\n");
}

/// Writes one chunk: its size in hex, CRLF, the data, CRLF. Empty data
/// writes nothing, since an empty chunk would end the body.
pub fn encode_chunk(dst: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    dst.extend_from_slice(format_number(&mut digits, data.len() as u64, 16));
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(data);
    dst.extend_from_slice(b"\r\n");
}

/// A complete response for `err`: its status, a plain-text body
/// (`err.body()`), `Date`, `Server` and `Connection: close`.
pub fn error_response(err: &ProtocolError, server: &str) -> Vec<u8> {
    let body = err.body().as_bytes();
    let mut headers = HeaderMap::with_capacity(1);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut dst = Vec::with_capacity(192 + body.len());
    let framing = ResponseFraming::Length(body.len() as u64);
    encode_head(
        &mut dst,
        err.status(),
        &headers,
        framing,
        false,
        Version::Http11,
        server,
    );
    dst.extend_from_slice(body);
    dst
}

/// Writes `HTTP/1.1 <code> <reason>\r\n` (the reason may be empty).
fn encode_status_line(dst: &mut Vec<u8>, status: StatusCode) {
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Copies the application's headers, minus those the server owns; a value
/// loses the whitespace around it (`"  a=1"` goes out as `a=1`, after one
/// space).
fn encode_app_headers(dst: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if !server_owned(name) {
            put_header(dst, name.as_str().as_bytes(), trim_ows(value.as_bytes()));
        }
    }
}

/// Headers an application's response never carries: the framing, which the server decides,
/// and the hop-by-hop headers (RFC 9110 §7.6.1), which describe this connection and which
/// the server alone manages (an application's `Keep-Alive: timeout=1` would mislead clients).
fn server_owned(name: &HeaderName) -> bool {
    const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];
    name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name == CONNECTION
        || HOP_BY_HOP.contains(&name.as_str())
}

/// Writes the header that delimits the body, if the framing has one.
fn encode_framing(dst: &mut Vec<u8>, framing: ResponseFraming) {
    match framing {
        ResponseFraming::Length(len) => {
            let mut digits = [0u8; 20];
            put_header(dst, b"content-length", format_number(&mut digits, len, 10));
        }
        ResponseFraming::Chunked => put_header(dst, b"transfer-encoding", b"chunked"),
        ResponseFraming::Close | ResponseFraming::Empty => {}
    }
}

/// Writes `Connection` when the default of `version` is not what happens.
fn encode_connection(dst: &mut Vec<u8>, keep_alive: bool, version: Version) {
    match (keep_alive, version) {
        (false, _) => put_header(dst, b"connection", b"close"),
        (true, Version::Http10) => put_header(dst, b"connection", b"keep-alive"),
        (true, Version::Http11) => {}
    }
}

/// Writes `name: value\r\n` (`name` in lower case).
fn put_header(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Formats `value` in `radix` (10 or 16, lowercase) at the end of `buf` and
/// returns the digits; `buf` must hold enough digits for `u64::MAX` in that
/// radix (20 decimal, 16 hex), else the leading digits are cut.
fn format_number(buf: &mut [u8], mut value: u64, radix: u64) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b"0123456789abcdef"
            .get((value % radix) as usize)
            .copied()
            .unwrap_or(b'0');
        start -= 1;
        value /= radix;
        if value == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ChunkedDecoder, Decoded};
    use bytes::BytesMut;
    use http::header::{HeaderName, LOCATION};

    const DATE_VALUE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    /// Headers with a fixed `Date`, so the output is exact, plus `extra`.
    fn headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(DATE, HeaderValue::from_static(DATE_VALUE));
        for (name, value) in extra {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn head(
        status: u16,
        map: &HeaderMap,
        framing: ResponseFraming,
        keep_alive: bool,
        version: Version,
        server: &str,
    ) -> String {
        let mut dst = Vec::new();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        encode_head(&mut dst, status, map, framing, keep_alive, version, server);
        String::from_utf8_lossy(&dst).into_owned()
    }

    #[test]
    fn encode_head_exact_bytes() {
        use ResponseFraming::{Chunked, Close, Empty, Length};
        use Version::{Http10, Http11};
        let d = format!("date: {DATE_VALUE}\r\n");
        let plain = headers(&[("content-type", "text/plain")]);
        let owned = headers(&[
            ("content-length", "99"),
            ("transfer-encoding", "gzip"),
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
            ("keep-alive", "timeout=1"),
            ("proxy-connection", "keep-alive"),
            ("trailer", "x-sum"),
            ("te", "trailers"),
            ("server", "app/1"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        let padded = headers(&[
            ("set-cookie", "  csrftoken=abc; Path=/"),
            ("x-tabs", "\t v \t"),
            ("x-blank", "   "),
        ]);
        let cases: Vec<(u16, &HeaderMap, ResponseFraming, bool, Version, &str, String)> = vec![
            (200, &plain, Length(5), true, Http11, "sky",
             format!("HTTP/1.1 200 OK\r\n{d}content-type: text/plain\r\nserver: sky\r\ncontent-length: 5\r\n\r\n")),
            (200, &plain, Chunked, false, Http11, "sky",
             format!("HTTP/1.1 200 OK\r\n{d}content-type: text/plain\r\nserver: sky\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")),
            (200, &plain, Length(0), true, Http10, "sky",
             format!("HTTP/1.1 200 OK\r\n{d}content-type: text/plain\r\nserver: sky\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n")),
            (200, &plain, Close, true, Http10, "sky",
             format!("HTTP/1.1 200 OK\r\n{d}content-type: text/plain\r\nserver: sky\r\nconnection: close\r\n\r\n")),
            (204, &plain, Empty, true, Http11, "",
             format!("HTTP/1.1 204 No Content\r\n{d}content-type: text/plain\r\n\r\n")),
            (304, &owned, Empty, false, Http10, "sky",
             format!("HTTP/1.1 304 Not Modified\r\n{d}server: app/1\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nconnection: close\r\n\r\n")),
            (599, &plain, Length(u64::MAX), true, Http11, "sky",
             format!("HTTP/1.1 599 \r\n{d}content-type: text/plain\r\nserver: sky\r\ncontent-length: 18446744073709551615\r\n\r\n")),
            (200, &padded, Length(0), true, Http11, "",
             format!("HTTP/1.1 200 OK\r\n{d}set-cookie: csrftoken=abc; Path=/\r\nx-tabs: v\r\nx-blank: \r\ncontent-length: 0\r\n\r\n")),
        ];
        for (status, map, framing, keep_alive, version, server, expected) in cases {
            let written = head(status, map, framing, keep_alive, version, server);
            assert_eq!(written, expected, "{status} {framing:?}");
        }
    }

    #[test]
    fn declared_lengths() {
        let table = [
            (Some("3"), Some(3)),
            (Some(" 3 "), Some(3)),
            (Some("0"), Some(0)),
            (Some("abc"), None),
            (Some("-1"), None),
            (None, None),
        ];
        for (value, expected) in table {
            let map = match value {
                Some(v) => headers(&[("content-length", v)]),
                None => headers(&[("content-type", "text/plain")]),
            };
            assert_eq!(declared_length(&map), expected, "{value:?}");
        }
    }

    #[test]
    fn date_is_added_when_missing() {
        let mut map = HeaderMap::new();
        map.insert(LOCATION, HeaderValue::from_static("/x"));
        let written = head(
            302,
            &map,
            ResponseFraming::Empty,
            true,
            Version::Http11,
            "s",
        );
        let date = written
            .lines()
            .find_map(|line| line.strip_prefix("date: "))
            .unwrap_or_default();
        assert!(httpdate::parse_http_date(date).is_ok(), "{written}");
        assert!(written.starts_with("HTTP/1.1 302 Found\r\nlocation: /x\r\ndate: "));
        assert!(written.ends_with("\r\nserver: s\r\n\r\n"));
    }

    #[test]
    fn framing_choice() {
        use ResponseFraming::{Chunked, Close, Length};
        let cases = [
            (Version::Http11, Some(0), Length(0)),
            (Version::Http11, Some(12), Length(12)),
            (Version::Http10, Some(12), Length(12)),
            (Version::Http11, None, Chunked),
            (Version::Http10, None, Close),
        ];
        for (version, known_len, expected) in cases {
            assert_eq!(ResponseFraming::choose(version, known_len), expected);
        }
    }

    #[test]
    fn chunk_encoding() {
        let big = vec![b'x'; 4096];
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b"1\r\na\r\n"),
            (b"0123456789abcdef", b"10\r\n0123456789abcdef\r\n"),
        ];
        for (data, expected) in cases {
            let mut dst = Vec::new();
            encode_chunk(&mut dst, data);
            assert_eq!(&dst[..], *expected);
        }
        let mut dst = Vec::new();
        encode_chunk(&mut dst, &big);
        assert!(dst.starts_with(b"1000\r\nxxx") && dst.ends_with(b"x\r\n"));
    }

    #[test]
    fn chunks_round_trip_through_the_decoder() {
        let mut wire = Vec::new();
        for piece in [&b"hello"[..], b"", b" ", &[b'w'; 300]] {
            encode_chunk(&mut wire, piece);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let mut src = BytesMut::from(&wire[..]);
        let mut decoder = ChunkedDecoder::new();
        let mut body = Vec::new();
        while let Ok(Decoded::Data(data)) = decoder.decode(&mut src) {
            body.extend_from_slice(&data);
        }
        assert!(decoder.is_done() && src.is_empty());
        assert_eq!(body, [&b"hello "[..], &[b'w'; 300]].concat());
    }

    #[test]
    fn number_formatting() {
        let cases: &[(u64, u64, &str)] = &[
            (0, 10, "0"),
            (7, 10, "7"),
            (10, 10, "10"),
            (1_000_000, 10, "1000000"),
            (u64::MAX, 10, "18446744073709551615"),
            (0, 16, "0"),
            (255, 16, "ff"),
            (4096, 16, "1000"),
            (u64::MAX, 16, "ffffffffffffffff"),
        ];
        for &(value, radix, expected) in cases {
            let mut buf = [0u8; 20];
            assert_eq!(format_number(&mut buf, value, radix), expected.as_bytes());
        }
    }

    #[test]
    fn error_responses() {
        let errors = [
            (
                ProtocolError::BadRequest("Bad Request: missing Host header\n"),
                "400 Bad Request",
            ),
            (ProtocolError::UriTooLong, "414 URI Too Long"),
            (
                ProtocolError::HeadTooLarge,
                "431 Request Header Fields Too Large",
            ),
            (
                ProtocolError::NotImplemented("Not Implemented: CONNECT\n"),
                "501 Not Implemented",
            ),
            (
                ProtocolError::VersionNotSupported,
                "505 HTTP Version Not Supported",
            ),
            (ProtocolError::PayloadTooLarge, "413 Payload Too Large"),
            (ProtocolError::RequestTimeout, "408 Request Timeout"),
        ];
        for (err, status_line) in errors {
            let bytes = error_response(&err, "skyrocket");
            let text = String::from_utf8(bytes).unwrap_or_default();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            let length = format!("\r\ncontent-length: {}\r\n", body.len());
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status_line}\r\n")),
                "{head}"
            );
            assert!(
                head.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"),
                "{head}"
            );
            assert!(head.contains(&length), "{head}");
            assert!(head.contains("\r\ndate: ") && head.contains("\r\nserver: skyrocket\r\n"));
            assert!(head.ends_with("\r\nconnection: close"), "{head}");
            assert_eq!(body, err.body());
        }
    }

    #[test]
    fn constants() {
        assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
    }
}
