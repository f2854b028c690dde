//! Protocol errors and the single place that maps them to status codes.

use std::fmt;

use http::StatusCode;

/// A request the server cannot or will not process, detected while reading it.
///
/// Every variant is answered with [`ProtocolError::status`] and
/// [`ProtocolError::body`], then the connection is closed: after a framing
/// error the server can no longer tell where the next request would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// 400: the message is malformed. The text is the whole response body,
    /// `"Bad Request: <reason>\n"` (build it with the crate-internal
    /// `bad_request!("reason")` macro so the format stays uniform).
    BadRequest(&'static str),
    /// 414: the request line alone is larger than the head limit, after the
    /// method, so it is the request-target that is too long.
    UriTooLong,
    /// 431: the head (or its number of header fields) is over the limit.
    HeadTooLarge,
    /// 501: the request needs a feature this server does not have (an unknown
    /// transfer coding, the CONNECT method). The text is the whole response
    /// body, `"Not Implemented: <what>\n"`.
    NotImplemented(&'static str),
    /// 505: a well-formed `HTTP/<digit>.<digit>` version other than 1.0 or 1.1.
    VersionNotSupported,
    /// 413: the body is larger than the server accepts (detected by the server).
    PayloadTooLarge,
    /// 408: the head or body did not arrive in time (detected by the server).
    RequestTimeout,
    /// 400: plain HTTP came to a TLS port (detected by the server; answered unencrypted, as
    /// Rocket answers it).
    PlainHttpOnTls,
}

/// Builds a [`ProtocolError::BadRequest`] whose body is
/// `"Bad Request: <reason>\n"`, at compile time (no allocation).
macro_rules! bad_request {
    ($reason:literal) => {
        $crate::http::ProtocolError::BadRequest(concat!("Bad Request: ", $reason, "\n"))
    };
}
pub(crate) use bad_request;

impl ProtocolError {
    /// The status code answering this error: the only mapping from protocol
    /// errors to status codes in the crate.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::PlainHttpOnTls => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::VersionNotSupported => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A short human-readable response body ending with a newline.
    pub fn body(&self) -> &'static str {
        match self {
            Self::BadRequest(text) | Self::NotImplemented(text) => text,
            Self::UriTooLong => "URI Too Long: the request target is too long\n",
            Self::HeadTooLarge => "Request Header Fields Too Large\n",
            Self::VersionNotSupported => "HTTP Version Not Supported: use HTTP/1.1 or HTTP/1.0\n",
            Self::PayloadTooLarge => "Payload Too Large\n",
            Self::RequestTimeout => "Request Timeout\n",
            Self::PlainHttpOnTls => "Bad Request: this port speaks HTTPS, not plain HTTP\n",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.body().trim_end(), self.status().as_u16())
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [(ProtocolError, u16); 9] = [
        (ProtocolError::BadRequest("Bad Request: x\n"), 400),
        (ProtocolError::UriTooLong, 414),
        (ProtocolError::HeadTooLarge, 431),
        (ProtocolError::NotImplemented("Not Implemented: x\n"), 501),
        (ProtocolError::VersionNotSupported, 505),
        (ProtocolError::PayloadTooLarge, 413),
        (ProtocolError::RequestTimeout, 408),
        (ProtocolError::PlainHttpOnTls, 400),
        (bad_request!("missing Host header"), 400),
    ];

    #[test]
    fn status_codes() {
        for (err, code) in ALL {
            assert_eq!(err.status().as_u16(), code, "{err:?}");
        }
    }

    #[test]
    fn bodies_are_short_lines() {
        for (err, _) in ALL {
            let body = err.body();
            assert!(body.ends_with('\n') && body.len() < 80, "{err:?}");
            assert_eq!(body.matches('\n').count(), 1, "{err:?}");
        }
    }

    #[test]
    fn bad_request_macro_builds_the_body() {
        assert_eq!(
            bad_request!("missing Host header").body(),
            "Bad Request: missing Host header\n"
        );
    }

    #[test]
    fn display_shows_text_and_code() {
        assert_eq!(
            bad_request!("missing Host header").to_string(),
            "Bad Request: missing Host header (400)"
        );
        assert_eq!(
            ProtocolError::HeadTooLarge.to_string(),
            "Request Header Fields Too Large (431)"
        );
    }
}
