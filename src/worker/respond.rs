//! Writing a [`Reply`] to the client: framing, HEAD, streams and files.

use std::io::{self, Read, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::app::{Body, Reply};
use crate::http::{
    declared_length, encode_chunk, encode_head, ResponseFraming, Version, LAST_CHUNK,
};

use crate::conn::Socket;

/// Bodies up to this size are sent in the same write as the head (files too: a small file is
/// read into the head's buffer, which costs less than `sendfile`'s machinery).
const INLINE_BODY: usize = 16 * 1024;

/// How the request shapes the response.
pub(crate) struct Plan<'a> {
    /// The request's version: HTTP/1.0 gets close-delimited streams.
    pub(crate) version: Version,
    /// A HEAD request gets the headers of the GET response and no body.
    pub(crate) is_head: bool,
    /// Whether the connection may stay open after this response.
    pub(crate) keep_alive: bool,
    /// The `Server` header value.
    pub(crate) server: &'a str,
}

/// What was sent.
pub(crate) struct Sent {
    /// The status sent.
    pub(crate) status: StatusCode,
    /// Body bytes written.
    pub(crate) body_bytes: u64,
    /// Whether the connection can serve another request.
    pub(crate) keep_alive: bool,
}

/// Writes `reply`, using `out` as the scratch buffer.
pub(crate) fn write_reply(
    socket: &mut Socket,
    out: &mut Vec<u8>,
    reply: Reply,
    plan: &Plan<'_>,
) -> io::Result<Sent> {
    let Reply {
        status,
        headers,
        mut body,
    } = reply;
    let framing = framing_for(status, &headers, &mut body, plan)?;
    let keep_alive = plan.keep_alive && framing != ResponseFraming::Close;
    out.clear();
    encode_head(
        out,
        status,
        &headers,
        framing,
        keep_alive,
        plan.version,
        plan.server,
    );
    let (body_bytes, complete) = match plan.is_head || framing == ResponseFraming::Empty {
        true => socket.send_or_queue(out, false).map(|()| (0, true))?,
        false => write_body(socket, out, body, framing)?,
    };
    Ok(Sent {
        status,
        body_bytes,
        keep_alive: keep_alive && complete,
    })
}

fn framing_for(
    status: StatusCode,
    headers: &HeaderMap,
    body: &mut Body,
    plan: &Plan<'_>,
) -> io::Result<ResponseFraming> {
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if status.is_informational() || bodiless {
        return Ok(ResponseFraming::Empty);
    }
    if plan.is_head && is_empty(body) {
        return Ok(head_framing(headers));
    }
    let known = match body {
        Body::Empty => Some(0),
        Body::Bytes(b) => Some(b.len() as u64),
        Body::File(f) => Some(file_remaining(f)?),
        Body::FilePart { len, .. } => Some(*len),
        Body::Stream(_) => declared_length(headers),
    };
    Ok(ResponseFraming::choose(plan.version, known))
}

/// An in-memory body with nothing in it: for a HEAD, the application may have left it out.
fn is_empty(body: &Body) -> bool {
    match body {
        Body::Empty => true,
        Body::Bytes(b) => b.is_empty(),
        _ => false,
    }
}

/// A HEAD answered without a body tells the length the application declared, if any: it
/// is the GET response's length, which the body cannot tell.
fn head_framing(headers: &HeaderMap) -> ResponseFraming {
    declared_length(headers).map_or(ResponseFraming::Empty, ResponseFraming::Length)
}

fn file_remaining(file: &mut std::fs::File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let pos = file.stream_position()?;
    Ok(len.saturating_sub(pos))
}

/// Writes the body after the head already in `out`; returns bytes sent and whether the body
/// was complete (an incomplete one means the connection must close).
fn write_body(
    socket: &mut Socket,
    out: &mut Vec<u8>,
    body: Body,
    framing: ResponseFraming,
) -> io::Result<(u64, bool)> {
    match body {
        Body::Empty => socket.send_or_queue(out, false).map(|()| (0, true)),
        Body::Bytes(b) => {
            let len = b.len() as u64;
            write_bytes(socket, out, b).map(|()| (len, true))
        }
        Body::File(file) | Body::FilePart { file, .. } => {
            let ResponseFraming::Length(len) = framing else {
                return Ok((0, false));
            };
            if len <= INLINE_BODY as u64 {
                return write_small_file(socket, out, file, len as usize);
            }
            socket.send_or_queue(out, true)?;
            socket.send_or_queue_file(file, len)?;
            Ok((len, true))
        }
        Body::Stream(chunks) => write_stream(socket, out, chunks, framing),
    }
}

/// Sends a small file with its head, read into the head's buffer; a file shorter than `len`
/// is sent as it is, and the response counts as cut short.
fn write_small_file(
    socket: &mut Socket,
    out: &mut Vec<u8>,
    mut file: std::fs::File,
    len: usize,
) -> io::Result<(u64, bool)> {
    let read = (&mut file).take(len as u64).read_to_end(out)?;
    socket.send_or_queue(out, false)?;
    Ok((read as u64, read == len))
}

/// Sends a response held in memory; what the socket does not take at once is queued, to be
/// sent while the connection waits in the idle set.
fn write_bytes(socket: &mut Socket, out: &mut Vec<u8>, body: Bytes) -> io::Result<()> {
    if body.len() <= INLINE_BODY {
        out.extend_from_slice(&body);
        return socket.send_or_queue(out, false);
    }
    socket.send_or_queue(out, false)?;
    socket.send_or_queue_bytes(body)
}

/// Sends each chunk as it is produced (WSGI semantics: no buffering across chunks).
fn write_stream(
    socket: &mut Socket,
    out: &mut Vec<u8>,
    mut chunks: crate::app::Chunks,
    framing: ResponseFraming,
) -> io::Result<(u64, bool)> {
    let limit = match framing {
        ResponseFraming::Length(n) => n,
        _ => u64::MAX,
    };
    let mut sent = 0u64;
    let mut complete = true;
    // A declared length is what is sent: once it is reached, iteration stops (PEP 3333).
    while sent < limit {
        let Some(next) = next_chunk(&mut chunks) else {
            break;
        };
        let Ok(mut chunk) = next else {
            complete = false;
            break;
        };
        chunk.truncate(usize::try_from(limit - sent).unwrap_or(usize::MAX));
        if chunk.is_empty() {
            continue;
        }
        match framing {
            ResponseFraming::Chunked => encode_chunk(out, &chunk),
            _ => out.extend_from_slice(&chunk),
        }
        socket.write_all(out)?;
        out.clear();
        sent += chunk.len() as u64;
    }
    finish_stream(socket, out, framing, complete)?;
    let exact = limit == u64::MAX || sent == limit;
    Ok((sent, complete && exact))
}

fn finish_stream(
    socket: &mut Socket,
    out: &mut Vec<u8>,
    framing: ResponseFraming,
    complete: bool,
) -> io::Result<()> {
    if complete && framing == ResponseFraming::Chunked {
        out.extend_from_slice(LAST_CHUNK);
    }
    match out.is_empty() {
        true => Ok(()),
        false => socket.write_all(out),
    }
}

/// The next chunk; a panicking iterator counts as a failed one.
fn next_chunk(chunks: &mut crate::app::Chunks) -> Option<io::Result<Bytes>> {
    match catch_unwind(AssertUnwindSafe(|| chunks.next())) {
        Ok(next) => next,
        Err(_) => {
            log::warn!("a response stream panicked; closing the connection");
            Some(Err(io::Error::other("stream panicked")))
        }
    }
}
