//! What an application answers: `start_response`'s status and headers, and the body iterable.

use std::fmt;
use std::fs::File;
use std::io;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};

/// A stream of body chunks, WSGI's iterable; an `Err` ends the response and closes the connection.
pub type Chunks = Box<dyn Iterator<Item = io::Result<Bytes>> + Send>;

/// The body of a [`Reply`].
pub enum Body {
    /// No body.
    Empty,
    /// The whole body, sent with `Content-Length`.
    Bytes(Bytes),
    /// Chunks produced as the client is written to: sent with `Content-Length` when the
    /// application declared one, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0).
    Stream(Chunks),
    /// A file sent from its current position to its end, with the kernel's zero-copy path.
    File(File),
    /// `len` bytes of a file from its current position (a byte range, or a file whose size
    /// the application knows), the same way. If the file turns out shorter, the response is
    /// cut short and the connection closed.
    FilePart {
        /// The file, positioned at the first byte to send.
        file: File,
        /// How many bytes to send.
        len: u64,
    },
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Body::Stream(_) => f.write_str("Stream(..)"),
            Body::File(_) => f.write_str("File(..)"),
            Body::FilePart { len, .. } => write!(f, "FilePart({len} bytes)"),
        }
    }
}

/// A complete answer: status, headers and body.
///
/// The server owns framing and connection management: `Transfer-Encoding`, `Connection` and
/// the other hop-by-hop headers (`Keep-Alive`, `Upgrade`, `TE`, `Trailer`,
/// `Proxy-Connection`) set here are not sent, and `Content-Length` counts only for a
/// [`Body::Stream`] and for a HEAD answered without a body.
#[derive(Debug)]
pub struct Reply {
    /// The status, as the first argument of `start_response`.
    pub status: StatusCode,
    /// The headers, as the second argument of `start_response`.
    pub headers: HeaderMap,
    /// The body, as the iterable a WSGI application returns.
    pub body: Body,
}

impl Reply {
    /// A reply with no headers and no body.
    pub fn new(status: StatusCode) -> Self {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    /// A `text/plain; charset=utf-8` reply.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reply::new(status)
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .body(Body::Bytes(body.into()))
    }

    /// A reply whose body is streamed chunk by chunk.
    pub fn stream<I>(status: StatusCode, chunks: I) -> Self
    where
        I: IntoIterator<Item = io::Result<Bytes>>,
        I::IntoIter: Send + 'static,
    {
        Reply::new(status).body(Body::Stream(Box::new(chunks.into_iter())))
    }

    /// Adds a header (a repeated name adds another value).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_content_type_and_body() {
        let r = Reply::text(StatusCode::OK, "hi");
        assert_eq!(r.headers[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert!(matches!(r.body, Body::Bytes(ref b) if b == "hi"));
    }

    #[test]
    fn header_appends_repeated_names() {
        let name = HeaderName::from_static("set-cookie");
        let r = Reply::new(StatusCode::NO_CONTENT)
            .header(name.clone(), HeaderValue::from_static("a=1"))
            .header(name.clone(), HeaderValue::from_static("b=2"));
        assert_eq!(r.headers.get_all(name).iter().count(), 2);
    }
}
