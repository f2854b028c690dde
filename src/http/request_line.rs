//! What can be read of a refused request's first line, for the access log.
//!
//! [`parse_head`](super::parse_head) refuses a head as a whole; the access log still records
//! what the client asked for when the line itself is readable. This reading is lenient about
//! what the line says (any version, any target) and strict about what may reach a log line:
//! three fields of visible ASCII, the method a token, or nothing.

use super::head::is_token;

/// The three fields of a request line, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method token.
    pub method: &'a str,
    /// The request-target.
    pub target: &'a str,
    /// The version field (`HTTP/1.1`, or whatever was sent in its place).
    pub version: &'a str,
}

/// The request line at the front of `buf` (after the empty lines a head may start with), if
/// it is complete and is three fields of visible ASCII separated by single spaces, the first
/// a token; `None` otherwise.
pub fn request_line(buf: &[u8]) -> Option<RequestLine<'_>> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = buf.get(start..)?;
    let line = rest.get(..rest.iter().position(|&b| b == b'\n')?)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&b| b == b' ');
    let (method, target, version) = (fields.next()?, fields.next()?, fields.next()?);
    let visible = |field: &[u8]| !field.is_empty() && field.iter().all(u8::is_ascii_graphic);
    if fields.next().is_some() || !is_token(method) || !visible(target) || !visible(version) {
        return None;
    }
    Some(RequestLine {
        method: std::str::from_utf8(method).ok()?,
        target: std::str::from_utf8(target).ok()?,
        version: std::str::from_utf8(version).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line's method, target and version.
    type Fields = Option<(&'static str, &'static str, &'static str)>;

    #[test]
    fn request_lines_table() {
        let table: [(&[u8], Fields); 16] = [
            // Complete lines, whatever the rest of the head holds.
            (b"GET / HTTP/1.1\r\n", Some(("GET", "/", "HTTP/1.1"))),
            (
                b"GET /a?b HTTP/1.0\nX: \x01\r\n",
                Some(("GET", "/a?b", "HTTP/1.0")),
            ),
            (
                b"\r\n\r\nPUT /x HTTP/1.1\r\n",
                Some(("PUT", "/x", "HTTP/1.1")),
            ),
            (b"GET / HTTP/2.0\r\n", Some(("GET", "/", "HTTP/2.0"))),
            (
                b"GET /\"q\\ HTTP/1.1\r\n",
                Some(("GET", "/\"q\\", "HTTP/1.1")),
            ),
            // Truncated: no line end yet.
            (b"", None),
            (b"\r\n", None),
            (b"GET /very-long-target", None),
            (b"GET / HTTP/1.1", None),
            // Not three fields of visible ASCII.
            (b"GET /\r\n", None),
            (b"GET  / HTTP/1.1\r\n", None),
            (b"GET / HTTP/1.1 extra\r\n", None),
            (b"G\"T / HTTP/1.1\r\n", None),
            (b"GET /\xff HTTP/1.1\r\n", None),
            (b"GET /\t HTTP/1.1\r\n", None),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", None),
        ];
        for (raw, expected) in table {
            let got = request_line(raw).map(|l| (l.method, l.target, l.version));
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(raw));
        }
    }
}
