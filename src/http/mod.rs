//! HTTP/1.1 wire protocol (RFC 9112) on byte buffers.
//!
//! This module knows nothing of actors, sockets or threads: the server reads
//! bytes into a `BytesMut`, and
//!
//! - [`parse_head`] splits a validated [`RequestHead`] off its front, or asks
//!   for more bytes (`Ok(None)`), or rejects the request ([`ProtocolError`]);
//! - the head's [`BodyFraming`] says how to read the body: a byte count, or
//!   a [`ChunkedDecoder`];
//! - [`encode_head`], [`encode_chunk`] and [`LAST_CHUNK`] write the response,
//!   framed as [`ResponseFraming::choose`] decides, and [`error_response`]
//!   writes the canned answer to a [`ProtocolError`];
//! - [`parse_proxy_header`] reads the PROXY protocol header a load balancer sends first;
//! - [`forwarded`] reads what trusted proxies say of the client in `Forwarded` and
//!   `X-Forwarded-*` headers;
//! - [`request_line`] reads what it can of a refused head's first line, for the access log.
//!
//! As in hyper's `proto::h1`, "incomplete" (`Ok(None)`, [`Decoded::NeedMore`])
//! is kept apart from "invalid" (`Err`), and [`ProtocolError::status`] is the
//! one place that maps protocol errors to status codes.

mod chunked;
mod date;
mod error;
mod forwarded;
mod head;
mod proxy;
mod request_line;
mod response;

pub use chunked::{ChunkedDecoder, Decoded};
pub use error::ProtocolError;
pub use forwarded::{forwarded, FORWARDED_HEADERS};
pub use head::{parse_head, BodyFraming, Limits, RequestHead, Version};
pub use proxy::{parse_proxy_header, ProxyProtocol};
pub use request_line::request_line;
pub use response::{
    declared_length, encode_chunk, encode_head, error_response, ResponseFraming, CONTINUE_100,
    LAST_CHUNK,
};
