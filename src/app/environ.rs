//! The environ: the CGI and WSGI variables of one request, computed from the parsed head.

use std::borrow::Cow;
use std::net::SocketAddr;

use percent_encoding::percent_decode_str;

use crate::http::{RequestHead, Version};

/// One request as WSGI's environ describes it.
///
/// Typed accessors give the common variables without allocating; [`Environ::get`] answers any
/// CGI/WSGI name and [`Environ::vars`] lists them all, as a Python `environ` dict would hold them.
/// Headers whose names contain `_` are left out of `HTTP_*` (they would be indistinguishable
/// from `-`, a known header-spoofing trick).
pub struct Environ {
    /// The parsed request head, owning its bytes.
    head: RequestHead,
    /// PATH_INFO when percent-decoding changed it; `None` means the raw path is already decoded.
    decoded_path: Option<Vec<u8>>,
    /// The local address the connection arrived on: SERVER_NAME and SERVER_PORT.
    local: SocketAddr,
    /// The client's address: REMOTE_ADDR and REMOTE_PORT.
    peer: SocketAddr,
    /// `wsgi.url_scheme`: "http" or, behind TLS, "https".
    scheme: &'static str,
}

impl Environ {
    /// Builds the environ of a request that arrived on `local` from `peer`.
    pub(crate) fn new(
        head: RequestHead,
        local: SocketAddr,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Self {
        let raw = head.path();
        let decoded_path = match raw.contains('%') {
            true => Some(percent_decode_str(raw).collect()),
            false => None,
        };
        Environ {
            head,
            decoded_path,
            local,
            peer,
            scheme,
        }
    }

    /// The parsed head, for the server's own decisions.
    pub(crate) fn head(&self) -> &RequestHead {
        &self.head
    }

    /// REQUEST_METHOD.
    pub fn method(&self) -> &str {
        self.head.method()
    }

    /// SCRIPT_NAME: always empty, the application is mounted at the root.
    pub fn script_name(&self) -> &str {
        ""
    }

    /// PATH_INFO, percent-decoded, as bytes (WSGI hands these to Python as latin-1).
    pub fn path_info_bytes(&self) -> &[u8] {
        match &self.decoded_path {
            Some(decoded) => decoded,
            None => self.head.path().as_bytes(),
        }
    }

    /// PATH_INFO, percent-decoded, as UTF-8 (invalid sequences replaced).
    pub fn path_info(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.path_info_bytes())
    }

    /// The request-target's path as sent, still percent-encoded (PATH_INFO before decoding).
    pub fn raw_path(&self) -> &str {
        self.head.path()
    }

    /// QUERY_STRING, still percent-encoded.
    pub fn query_string(&self) -> &str {
        self.head.query()
    }

    /// SERVER_PROTOCOL: `HTTP/1.0` or `HTTP/1.1`.
    pub fn protocol(&self) -> &'static str {
        self.head.version().as_str()
    }

    /// Whether the request is HTTP/1.1.
    pub fn is_http11(&self) -> bool {
        self.head.version() == Version::Http11
    }

    /// SERVER_NAME and SERVER_PORT: the address the connection arrived on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// REMOTE_ADDR and REMOTE_PORT.
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `wsgi.url_scheme`.
    pub fn url_scheme(&self) -> &'static str {
        self.scheme
    }

    /// The host the request is for: the authority of an absolute-form target
    /// (`GET http://host:port/...`, RFC 9112 §3.2.2), else the `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.head.host()
    }

    /// The first value of a header, if it is valid UTF-8; names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header as received, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }

    /// Any CGI/WSGI variable by name, e.g. `PATH_INFO` or `HTTP_USER_AGENT`.
    pub fn get(&self, key: &str) -> Option<Cow<'_, str>> {
        if let Some(name) = key.strip_prefix("HTTP_") {
            return self.http_var(name);
        }
        self.cgi_var(key)
    }

    /// All variables, CGI ones first, then one `HTTP_*` per header name (repeats joined by `,`).
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = CGI_NAMES
            .iter()
            .filter_map(|name| Some((name.to_string(), self.cgi_var(name)?.into_owned())))
            .collect();
        for (name, _) in self.head.headers() {
            let Some(key) = http_key(name) else { continue };
            if vars.iter().any(|(k, _)| *k == key) {
                continue;
            }
            if let Some(value) = self.get(&key) {
                vars.push((key, value.into_owned()));
            }
        }
        vars
    }

    fn cgi_var(&self, key: &str) -> Option<Cow<'_, str>> {
        let text = match key {
            "REQUEST_METHOD" => self.method().into(),
            "SCRIPT_NAME" => "".into(),
            "PATH_INFO" => self.path_info(),
            "QUERY_STRING" => self.query_string().into(),
            "CONTENT_TYPE" => self.head.content_type()?.into(),
            "CONTENT_LENGTH" => self.header("content-length")?.into(),
            "SERVER_NAME" => self.local.ip().to_string().into(),
            "SERVER_PORT" => self.local.port().to_string().into(),
            "SERVER_PROTOCOL" => self.protocol().into(),
            "SERVER_SOFTWARE" => SERVER_SOFTWARE.into(),
            "REMOTE_ADDR" => self.peer.ip().to_string().into(),
            "REMOTE_PORT" => self.peer.port().to_string().into(),
            "wsgi.url_scheme" => self.scheme.into(),
            _ => return None,
        };
        Some(text)
    }

    fn http_var(&self, name: &str) -> Option<Cow<'_, str>> {
        if matches!(name, "CONTENT_TYPE" | "CONTENT_LENGTH") {
            return None;
        }
        let mut values = self
            .head
            .headers()
            .filter(|(n, _)| http_key(n).is_some_and(|k| &k[5..] == name))
            .map(|(_, v)| String::from_utf8_lossy(v));
        let first = values.next()?;
        Some(values.fold(first, |acc, v| Cow::Owned(format!("{acc},{v}"))))
    }
}

/// `SERVER_SOFTWARE`: this server and its version.
pub const SERVER_SOFTWARE: &str = concat!("skyrocket/", env!("CARGO_PKG_VERSION"));

/// The non-header variables, in the order [`Environ::vars`] lists them.
const CGI_NAMES: [&str; 13] = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
];

/// `HTTP_` plus the upper-cased name with `-` as `_`; `None` for names that have no `HTTP_*`.
pub(crate) fn http_key(name: &str) -> Option<String> {
    if name.contains('_')
        || name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("content-length")
    {
        return None;
    }
    let upper: String = name
        .chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    Some(format!("HTTP_{upper}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits};
    use bytes::BytesMut;

    fn environ(raw: &str) -> Environ {
        let mut buf = BytesMut::from(raw);
        let head = parse_head(&mut buf, &Limits::default()).unwrap().unwrap();
        let local = "127.0.0.1:8000".parse().unwrap();
        let peer = "10.1.2.3:5555".parse().unwrap();
        Environ::new(head, local, peer, "http")
    }

    #[test]
    fn cgi_variables() {
        let e = environ(
            "POST /a%20b/c%2Fd?x=%20y HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
             Content-Length: 3\r\n\r\n",
        );
        let table = [
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/a b/c/d"),
            ("QUERY_STRING", "x=%20y"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            ("SERVER_NAME", "127.0.0.1"),
            ("SERVER_PORT", "8000"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", SERVER_SOFTWARE),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "5555"),
            ("wsgi.url_scheme", "http"),
            ("HTTP_HOST", "h"),
        ];
        for (key, value) in table {
            assert_eq!(e.get(key).as_deref(), Some(value), "{key}");
        }
        assert_eq!(e.get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(e.get("NOPE"), None);
    }

    #[test]
    fn headers_become_http_vars() {
        let e = environ(
            "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nUser-Agent: t\r\nX_Evil: 1\r\n\r\n",
        );
        assert_eq!(e.get("HTTP_X_A").as_deref(), Some("1,2"));
        assert_eq!(e.get("HTTP_USER_AGENT").as_deref(), Some("t"));
        assert_eq!(e.get("HTTP_X_EVIL"), None);
        let vars = e.vars();
        let keys: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.iter().filter(|k| **k == "HTTP_X_A").count(), 1);
        assert!(keys.contains(&"HTTP_USER_AGENT"));
        assert!(!keys.contains(&"CONTENT_LENGTH"));
    }

    #[test]
    fn absolute_form_and_invalid_utf8_path() {
        let e = environ("GET http://example.com/p%FFq?z HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(e.path_info_bytes(), b"/p\xFFq");
        assert_eq!(e.path_info(), "/p\u{FFFD}q");
        assert_eq!(e.query_string(), "z");
    }
}
