//! The environ: the CGI and WSGI variables of one request, computed from the parsed head.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use percent_encoding::percent_decode_str;

use crate::http::{RequestHead, Version};
use crate::tls::TlsInfo;

/// One request as WSGI's environ describes it.
///
/// Typed accessors give the common variables without allocating; [`Environ::get`] answers any
/// CGI/WSGI name and [`Environ::vars`] lists them all, as a Python `environ` dict would hold them.
/// Headers whose names contain `_` are left out of `HTTP_*` (they would be indistinguishable
/// from `-`, a known header-spoofing trick).
///
/// Text and bytes: [`Environ::path_info_bytes`], [`Environ::header_bytes`] and
/// [`Environ::headers`] give the bytes exactly as they are (`/a%ff` and `/a%fe` differ there);
/// [`Environ::path_info`], [`Environ::header`], [`Environ::get`] and [`Environ::vars`] give
/// text, where bytes that are not UTF-8 become U+FFFD (or, for `header`, no value at all).
/// [`Environ::request_uri`] is the request-target as sent (`REQUEST_URI`, `RAW_URI`), still
/// percent-encoded, always ASCII.
///
/// An absolute-form target (`GET http://other.example:81/p`, RFC 9112 §3.2.2) decides the host:
/// `HTTP_HOST`, `SERVER_NAME` and `SERVER_PORT` follow it and `Host` is ignored; the scheme
/// stays the connection's ([`Environ::url_scheme`]), whatever the target says.
///
/// On a TLS interface, mod_ssl's `SSL_*` variables describe the connection
/// ([`Environ::ssl_protocol`] and the other `ssl_*` accessors): `SSL_PROTOCOL`, `SSL_CIPHER`,
/// `SSL_CLIENT_VERIFY`, and for a client that presented a certificate `SSL_CLIENT_S_DN`,
/// `SSL_CLIENT_I_DN`, `SSL_CLIENT_SERIAL` and the certificate in PEM as `SSL_CLIENT_CERT`
/// (mod_ssl's name) and `SSL_CLIENT_RAW_CERT` (Rocket's).
pub struct Environ {
    /// The parsed request head, owning its bytes.
    head: RequestHead,
    /// PATH_INFO when percent-decoding changed it; `None` means the raw path is already decoded.
    decoded_path: Option<Vec<u8>>,
    /// The local address the connection arrived on: SERVER_NAME and SERVER_PORT, unless the
    /// target names a host.
    local: SocketAddr,
    /// The client's address: REMOTE_ADDR and REMOTE_PORT.
    peer: SocketAddr,
    /// `wsgi.url_scheme`: "http" or, behind TLS, "https".
    scheme: &'static str,
    /// HTTP_HOST as a trusted proxy received it (`X-Forwarded-Host`), in place of the head's.
    forwarded_host: Option<String>,
    /// The `SSL_*` variables of a connection to a TLS interface, shared by its requests;
    /// `None` for plain HTTP (a request over TLS to a proxy in front has none either).
    tls: Option<Arc<TlsInfo>>,
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
            forwarded_host: None,
            tls: None,
        }
    }

    /// Describes the TLS connection the request arrived on (`SSL_*`), if any.
    pub(crate) fn with_tls(mut self, tls: Option<Arc<TlsInfo>>) -> Self {
        self.tls = tls;
        self
    }

    /// Takes HTTP_HOST from a trusted proxy's `X-Forwarded-Host` (or `Forwarded`'s `host`),
    /// if it gave one.
    pub(crate) fn with_forwarded_host(mut self, host: Option<String>) -> Self {
        self.forwarded_host = host;
        self
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

    /// REQUEST_URI and RAW_URI: the request-target exactly as sent (path and query, or the
    /// whole absolute URI), still percent-encoded, as gunicorn and uWSGI give it.
    pub fn request_uri(&self) -> &str {
        self.head.target()
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

    /// The address the connection arrived on (SERVER_NAME and SERVER_PORT, unless an
    /// absolute-form target names a host).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// SERVER_NAME: the host of an absolute-form target (an IPv6 address in brackets, as
    /// written), else the IP address the connection arrived on.
    pub fn server_name(&self) -> Cow<'_, str> {
        match self.head.target_host() {
            Some((host, _)) => host.into(),
            None => self.local.ip().to_string().into(),
        }
    }

    /// SERVER_PORT: the port of an absolute-form target (written, else 80, or 443 for an
    /// `https` target), else the port the connection arrived on.
    pub fn server_port(&self) -> u16 {
        self.head
            .target_host()
            .map_or(self.local.port(), |(_, port)| port)
    }

    /// REMOTE_ADDR and REMOTE_PORT.
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    /// `wsgi.url_scheme` (and `HTTPS`, `on` when it is `https`, absent otherwise, as CGI
    /// servers set it).
    pub fn url_scheme(&self) -> &'static str {
        self.scheme
    }

    /// HTTP_HOST: the host the request is for, as a trusted proxy says the client sent it,
    /// else the authority of an absolute-form target (`GET http://host:port/...`, RFC 9112
    /// §3.2.2), else the `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.forwarded_host.as_deref().or(self.head.host())
    }

    /// SSL_PROTOCOL: `TLSv1.2` or `TLSv1.3` on a TLS interface.
    pub fn ssl_protocol(&self) -> Option<&str> {
        self.tls.as_deref()?.protocol()
    }

    /// SSL_CIPHER: the cipher suite's name on a TLS interface, as rustls names it (the IANA
    /// name, with `TLS13_` for TLS 1.3's), e.g. `TLS13_AES_128_GCM_SHA256`.
    pub fn ssl_cipher(&self) -> Option<&str> {
        self.tls.as_deref()?.cipher()
    }

    /// SSL_CLIENT_VERIFY on a TLS interface: `SUCCESS` if the client presented a certificate
    /// (it was verified: an invalid one fails the handshake, so mod_ssl's `FAILED` never
    /// reaches the application), `NONE` if it presented none.
    pub fn ssl_client_verify(&self) -> Option<&str> {
        Some(self.tls.as_deref()?.client_verify())
    }

    /// SSL_CLIENT_S_DN: the client certificate's subject as mod_ssl writes it (RFC 4514,
    /// the most specific attribute first: `CN=alice,O=Example,C=FR`).
    pub fn ssl_client_s_dn(&self) -> Option<&str> {
        self.tls.as_deref()?.client_subject()
    }

    /// SSL_CLIENT_I_DN: the client certificate's issuer, written as [`Environ::ssl_client_s_dn`].
    pub fn ssl_client_i_dn(&self) -> Option<&str> {
        self.tls.as_deref()?.client_issuer()
    }

    /// SSL_CLIENT_SERIAL: the client certificate's serial number in upper-case hexadecimal.
    pub fn ssl_client_serial(&self) -> Option<&str> {
        self.tls.as_deref()?.client_serial()
    }

    /// SSL_CLIENT_CERT (and SSL_CLIENT_RAW_CERT): the client certificate in PEM.
    pub fn ssl_client_cert(&self) -> Option<&str> {
        self.tls.as_deref()?.client_cert_pem()
    }

    /// The client certificate as it was sent (DER), to parse it further.
    pub fn ssl_client_cert_der(&self) -> Option<&[u8]> {
        self.tls.as_deref()?.client_cert_der()
    }

    /// The first value of a header, if it is valid UTF-8; names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of a header, byte for byte (surrounding whitespace aside); names are
    /// case-insensitive.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
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

    /// All variables, CGI ones first (`SSL_*` last), then `HTTP_HOST` and one `HTTP_*` per
    /// other header name (repeats joined by `,`, `Cookie`'s by `; `).
    pub fn vars(&self) -> Vec<(String, String)> {
        let cgi = (CGI_NAMES.iter().chain(&SSL_NAMES))
            .filter_map(|name| Some((name.to_string(), self.cgi_var(name)?.into_owned())));
        let http = (self.http_vars()).map(|(key, value)| (key, lossy(value).into_owned()));
        cgi.chain(http).collect()
    }

    /// The `HTTP_*` variables, values as bytes: `HTTP_HOST` from [`Environ::host`], then one
    /// per other header name (in the order of their first field), its fields combined.
    pub(crate) fn http_vars(&self) -> impl Iterator<Item = (String, Cow<'_, [u8]>)> + '_ {
        let host = (self.host()).map(|host| ("HTTP_HOST".to_owned(), Cow::from(host.as_bytes())));
        let headers = self.head.headers().enumerate();
        let others = headers.filter_map(|(at, (name, _))| {
            let key = http_key(name).filter(|key| key != "HTTP_HOST")?;
            let mut earlier = self.head.headers().take(at);
            match earlier.any(|(seen, _)| seen.eq_ignore_ascii_case(name)) {
                true => None,
                false => Some((key, self.head.combined_header(name)?)),
            }
        });
        host.into_iter().chain(others)
    }

    fn cgi_var(&self, key: &str) -> Option<Cow<'_, str>> {
        let text = match key {
            "REQUEST_METHOD" => self.method().into(),
            "SCRIPT_NAME" => "".into(),
            "PATH_INFO" => self.path_info(),
            "QUERY_STRING" => self.query_string().into(),
            "REQUEST_URI" | "RAW_URI" => self.request_uri().into(),
            "CONTENT_TYPE" => self.head.content_type()?.into(),
            "CONTENT_LENGTH" => self.header("content-length")?.into(),
            "SERVER_NAME" => self.server_name(),
            "SERVER_PORT" => self.server_port().to_string().into(),
            "SERVER_PROTOCOL" => self.protocol().into(),
            "SERVER_SOFTWARE" => SERVER_SOFTWARE.into(),
            "REMOTE_ADDR" => self.peer.ip().to_string().into(),
            "REMOTE_PORT" => self.peer.port().to_string().into(),
            "wsgi.url_scheme" => self.scheme.into(),
            "HTTPS" if self.scheme == "https" => "on".into(),
            _ => return self.ssl_var(key).map(Cow::from),
        };
        Some(text)
    }

    /// One of mod_ssl's [`SSL_NAMES`], if the connection is TLS and has it.
    pub(crate) fn ssl_var(&self, key: &str) -> Option<&str> {
        let tls = self.tls.as_deref()?;
        match key {
            "SSL_PROTOCOL" => tls.protocol(),
            "SSL_CIPHER" => tls.cipher(),
            "SSL_CLIENT_VERIFY" => Some(tls.client_verify()),
            "SSL_CLIENT_S_DN" => tls.client_subject(),
            "SSL_CLIENT_I_DN" => tls.client_issuer(),
            "SSL_CLIENT_SERIAL" => tls.client_serial(),
            "SSL_CLIENT_CERT" | "SSL_CLIENT_RAW_CERT" => tls.client_cert_pem(),
            _ => None,
        }
    }

    fn http_var(&self, name: &str) -> Option<Cow<'_, str>> {
        if name == "HOST" {
            return self.host().map(Cow::from);
        }
        let (field, _) = (self.head.headers())
            .find(|(field, _)| http_key(field).is_some_and(|key| key.get(5..) == Some(name)))?;
        self.head.combined_header(field).map(lossy)
    }
}

/// Bytes as text, sequences that are not UTF-8 replaced by U+FFFD.
fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(bytes) => String::from_utf8_lossy(bytes),
        Cow::Owned(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
            .into(),
    }
}

/// `SERVER_SOFTWARE`: this server and its version.
pub const SERVER_SOFTWARE: &str = concat!("skyrocket/", env!("CARGO_PKG_VERSION"));

/// The non-header variables, in the order [`Environ::vars`] lists them.
const CGI_NAMES: [&str; 16] = [
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_URI",
    "RAW_URI",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "HTTPS",
];

/// The variables of a TLS connection, in the order [`Environ::vars`] lists them (after
/// [`CGI_NAMES`]): mod_ssl's, and Rocket's name of the client certificate.
pub(crate) const SSL_NAMES: [&str; 8] = [
    "SSL_PROTOCOL",
    "SSL_CIPHER",
    "SSL_CLIENT_VERIFY",
    "SSL_CLIENT_S_DN",
    "SSL_CLIENT_I_DN",
    "SSL_CLIENT_SERIAL",
    "SSL_CLIENT_CERT",
    "SSL_CLIENT_RAW_CERT",
];

/// `HTTP_` plus the upper-cased name with `-` as `_`; `None` for names that have no `HTTP_*`.
fn http_key(name: &str) -> Option<String> {
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
    use crate::test_support::{certs, environ, tls_info};

    /// The `SSL_*` variables of a TLS connection, by accessor, by name, and listed.
    #[test]
    fn a_tls_connection_gives_mod_ssls_variables() {
        let tls = Arc::new(tls_info("environ-ssl", true));
        let e = environ("GET / HTTP/1.1\r\nHost: h\r\n\r\n").with_tls(Some(tls));
        let pem = e.ssl_client_cert().expect("the certificate");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
        assert!(e.ssl_client_cert_der().is_some_and(|der| !der.is_empty()));
        let table = [
            ("SSL_PROTOCOL", e.ssl_protocol(), "TLSv1.3"),
            ("SSL_CIPHER", e.ssl_cipher(), "TLS13_AES_128_GCM_SHA256"),
            ("SSL_CLIENT_VERIFY", e.ssl_client_verify(), "SUCCESS"),
            ("SSL_CLIENT_S_DN", e.ssl_client_s_dn(), certs::CLIENT_DN),
            ("SSL_CLIENT_I_DN", e.ssl_client_i_dn(), certs::CA_DN),
            (
                "SSL_CLIENT_SERIAL",
                e.ssl_client_serial(),
                certs::CLIENT_SERIAL,
            ),
            ("SSL_CLIENT_CERT", e.ssl_client_cert(), pem),
            ("SSL_CLIENT_RAW_CERT", e.ssl_client_cert(), pem),
        ];
        let vars = e.vars();
        let listed: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        let ssl: Vec<&str> = (listed.iter().copied())
            .filter(|k| k.starts_with("SSL_"))
            .collect();
        assert_eq!(ssl, SSL_NAMES, "each once, in order");
        for (key, typed, value) in table {
            assert_eq!(typed, Some(value), "{key}");
            assert_eq!(e.get(key).as_deref(), Some(value), "{key}");
            assert!(
                vars.contains(&(key.to_string(), value.to_string())),
                "{key}"
            );
        }
        assert_eq!(e.url_scheme(), "http", "the data plane decides the scheme");
    }

    /// A client without a certificate: `SSL_CLIENT_VERIFY` is `NONE` and the certificate's
    /// variables are absent; plain HTTP has no `SSL_*` variable at all.
    #[test]
    fn ssl_variables_are_absent_when_there_is_nothing_to_say() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let anonymous = environ(raw).with_tls(Some(Arc::new(tls_info("environ-anon", false))));
        assert_eq!(anonymous.ssl_client_verify(), Some("NONE"));
        assert_eq!(anonymous.ssl_protocol(), Some("TLSv1.3"));
        let plain = environ(raw);
        for name in &SSL_NAMES[3..] {
            assert_eq!(anonymous.get(name), None, "{name}");
        }
        assert_eq!(anonymous.ssl_client_cert_der(), None);
        for name in SSL_NAMES {
            assert_eq!(plain.get(name), None, "{name}");
        }
        assert!(plain.vars().iter().all(|(k, _)| !k.starts_with("SSL_")));
        let typed = [
            plain.ssl_protocol(),
            plain.ssl_cipher(),
            plain.ssl_client_verify(),
            plain.ssl_client_s_dn(),
            plain.ssl_client_i_dn(),
            plain.ssl_client_serial(),
            plain.ssl_client_cert(),
        ];
        assert!(typed.iter().all(Option::is_none), "{typed:?}");
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
            ("REQUEST_URI", "/a%20b/c%2Fd?x=%20y"),
            ("RAW_URI", "/a%20b/c%2Fd?x=%20y"),
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

    /// An absolute-form target decides `HTTP_HOST`, `SERVER_NAME` and `SERVER_PORT` (and the
    /// path); the scheme stays the connection's.
    #[test]
    fn absolute_form_decides_the_host() {
        let cases = [
            (
                "GET http://other.example:81/p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                ["other.example:81", "other.example", "81", "/p", "q=1"],
            ),
            (
                "GET http://other.example/p HTTP/1.1\r\nHost: x:82\r\n\r\n",
                ["other.example", "other.example", "80", "/p", ""],
            ),
            (
                "GET https://other.example/p HTTP/1.1\r\nHost: x\r\n\r\n",
                ["other.example", "other.example", "443", "/p", ""],
            ),
            (
                "GET http://[::1]:8080 HTTP/1.0\r\n\r\n",
                ["[::1]:8080", "[::1]", "8080", "/", ""],
            ),
            (
                "GET /p?q HTTP/1.1\r\nHost: x:82\r\n\r\n",
                ["x:82", "127.0.0.1", "8000", "/p", "q"],
            ),
        ];
        let keys = [
            "HTTP_HOST",
            "SERVER_NAME",
            "SERVER_PORT",
            "PATH_INFO",
            "QUERY_STRING",
        ];
        for (raw, expected) in cases {
            let e = environ(raw);
            for (key, value) in keys.iter().zip(expected) {
                assert_eq!(e.get(key).as_deref(), Some(value), "{key} {raw:?}");
                let listed: Vec<_> = e.vars().into_iter().filter(|(k, _)| k == key).collect();
                assert_eq!(listed, [(key.to_string(), value.to_string())], "{raw:?}");
            }
            assert_eq!(e.url_scheme(), "http", "{raw:?}");
        }
    }

    /// Repeated fields are joined with `,`; `Cookie` fields with `; `, so that a cookie parser
    /// finds every cookie.
    #[test]
    fn repeated_headers_are_joined() {
        let cases = [
            ("Cookie: a=1\r\nCookie: b=2\r\n", "HTTP_COOKIE", "a=1; b=2"),
            (
                "cookie: a=1\r\nX: y\r\nCOOKIE: b=2; c=3\r\n",
                "HTTP_COOKIE",
                "a=1; b=2; c=3",
            ),
            ("Cookie: a=1\r\n", "HTTP_COOKIE", "a=1"),
            ("Accept: a\r\naccept: b\r\n", "HTTP_ACCEPT", "a,b"),
        ];
        for (fields, key, value) in cases {
            let e = environ(format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n"));
            assert_eq!(e.get(key).as_deref(), Some(value), "{fields}");
            let listed: Vec<_> = e.vars().into_iter().filter(|(k, _)| k == key).collect();
            assert_eq!(listed, [(key.to_string(), value.to_string())], "{fields}");
        }
    }

    /// The raw target as `REQUEST_URI` and `RAW_URI`; decoded paths and header values byte for
    /// byte, so that paths differing only in bytes that are not UTF-8 stay apart.
    #[test]
    fn raw_target_and_exact_bytes() {
        let cases: [(&str, &[u8]); 6] = [
            ("/a%ff", b"/a\xff"),
            ("/a%fe", b"/a\xfe"),
            ("/a%c0%af", b"/a\xc0\xaf"),
            ("/a%2Fb%20c?x=%41", b"/a/b c"),
            ("http://h:81/a%ff?q", b"/a\xff"),
            ("/caf%C3%A9", "/caf\u{e9}".as_bytes()),
        ];
        for (target, path) in cases {
            let e = environ(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n"));
            assert_eq!(e.request_uri(), target);
            assert_eq!(e.get("REQUEST_URI").as_deref(), Some(target));
            assert_eq!(e.get("RAW_URI").as_deref(), Some(target));
            assert_eq!(e.path_info_bytes(), path, "{target}");
        }
        let e = environ(&b"GET / HTTP/1.1\r\nHost: h\r\nX-Bin: \xff\xfe\r\nX-Text: ok\r\n\r\n"[..]);
        assert_eq!(e.header_bytes("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(e.header("x-bin"), None);
        assert_eq!(e.header_bytes("X-TEXT"), Some(&b"ok"[..]));
        assert_eq!(e.header("x-text"), Some("ok"));
        assert_eq!(e.header_bytes("missing"), None);
    }
}
