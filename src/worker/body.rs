//! The request body as the application reads it: Content-Length or chunked, straight from the
//! socket, never buffered whole.

use std::io::{self, Read};

use bytes::{Buf, Bytes, BytesMut};

use crate::http::{BodyFraming, ChunkedDecoder, Decoded, ProtocolError, CONTINUE_100};

use crate::conn::{Budget, Socket};

/// Where the body stands.
enum State {
    /// Bytes left of a Content-Length body.
    Length(u64),
    /// Decoding chunks; `pending` holds data decoded but not yet handed out.
    Chunked {
        /// The chunked-coding state machine.
        decoder: ChunkedDecoder,
        /// The rest of the last decoded chunk.
        pending: Bytes,
    },
    /// The whole body has been read.
    Done,
}

/// Why reading the body stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// The client broke the protocol or stalled: answer with this error and close.
    Protocol(ProtocolError),
    /// The connection failed: nothing can be answered.
    Broken,
}

/// Reads one request's body from the connection buffer, then the socket.
pub(crate) struct BodyReader<'a> {
    /// Bytes already read from the socket (the body's start, maybe the next request).
    buf: &'a mut BytesMut,
    /// The connection.
    socket: &'a mut Socket,
    /// Progress through the body.
    state: State,
    /// `100 Continue` is owed before the first read.
    continue_pending: bool,
    /// How long the client may keep the worker waiting for body bytes.
    budget: Budget,
    /// The first fault met; every later read repeats it.
    fault: Option<BodyFault>,
}

impl<'a> BodyReader<'a> {
    /// Starts reading a body framed as `framing`.
    pub(crate) fn new(
        buf: &'a mut BytesMut,
        socket: &'a mut Socket,
        framing: BodyFraming,
        expects_continue: bool,
        budget: Budget,
    ) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::Chunked {
                decoder: ChunkedDecoder::new(),
                pending: Bytes::new(),
            },
        };
        let continue_pending = expects_continue && !matches!(state, State::Done);
        BodyReader {
            buf,
            socket,
            state,
            continue_pending,
            budget,
            fault: None,
        }
    }

    /// Fails a chunked body with 413 as soon as a chunk size takes it past `max` bytes (the
    /// decoder checks each size line; a Content-Length is checked before the application runs).
    pub(crate) fn with_limit(mut self, max: u64) -> Self {
        if let State::Chunked { decoder, .. } = &mut self.state {
            *decoder = ChunkedDecoder::with_limit(max);
        }
        self
    }

    /// The fault that stopped the body, if any.
    pub(crate) fn fault(&self) -> Option<&BodyFault> {
        self.fault.as_ref()
    }

    /// Reads and drops the rest of the body, up to `limit` bytes. True when the connection is
    /// ready for the next request; false when it must close (too much left, or a fault).
    pub(crate) fn discard_rest(&mut self, limit: u64) -> bool {
        if self.continue_pending {
            return false;
        }
        if matches!(self.state, State::Done) {
            return self.fault.is_none();
        }
        let mut scratch = [0u8; 8192];
        let mut discarded = 0u64;
        while discarded <= limit {
            match self.read(&mut scratch) {
                Ok(0) => return true,
                Ok(n) => discarded += n as u64,
                Err(_) => return false,
            }
        }
        false
    }

    fn read_body(&mut self, out: &mut [u8]) -> Result<usize, BodyFault> {
        match self.state {
            State::Done => Ok(0),
            State::Length(left) => self.read_length(left, out),
            State::Chunked { .. } => self.read_chunked(out),
        }
    }

    fn read_length(&mut self, left: u64, out: &mut [u8]) -> Result<usize, BodyFault> {
        let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = if self.buf.is_empty() {
            let n = self.socket.read_within(&mut out[..want], &mut self.budget);
            eof_is_fault(n.map_err(io_fault))?
        } else {
            let n = want.min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.advance(n);
            n
        };
        self.state = match left - n as u64 {
            0 => State::Done,
            rest => State::Length(rest),
        };
        Ok(n)
    }

    fn read_chunked(&mut self, out: &mut [u8]) -> Result<usize, BodyFault> {
        let State::Chunked { decoder, pending } = &mut self.state else {
            return Ok(0);
        };
        loop {
            if !pending.is_empty() {
                let n = out.len().min(pending.len());
                out[..n].copy_from_slice(&pending[..n]);
                pending.advance(n);
                return Ok(n);
            }
            match decoder.decode(self.buf).map_err(BodyFault::Protocol)? {
                Decoded::Data(data) => *pending = data,
                Decoded::Done => break,
                Decoded::NeedMore => {
                    let n = self.socket.fill(self.buf, &mut self.budget);
                    eof_is_fault(n.map_err(io_fault))?;
                }
            }
        }
        self.state = State::Done;
        Ok(0)
    }

    fn send_continue(&mut self) -> Result<(), BodyFault> {
        if self.continue_pending {
            self.continue_pending = false;
            self.socket
                .write_all(CONTINUE_100)
                .map_err(|_| BodyFault::Broken)?;
        }
        Ok(())
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(fault) = &self.fault {
            return Err(fault_to_io(fault));
        }
        if out.is_empty() {
            return Ok(0);
        }
        let result = self.send_continue().and_then(|()| self.read_body(out));
        result.map_err(|fault| {
            let err = fault_to_io(&fault);
            self.fault = Some(fault);
            err
        })
    }
}

fn eof_is_fault(n: Result<usize, BodyFault>) -> Result<usize, BodyFault> {
    match n? {
        0 => Err(BodyFault::Protocol(ProtocolError::BadRequest(
            "incomplete body",
        ))),
        n => Ok(n),
    }
}

fn io_fault(err: io::Error) -> BodyFault {
    match err.kind() {
        io::ErrorKind::TimedOut => BodyFault::Protocol(ProtocolError::RequestTimeout),
        _ => BodyFault::Broken,
    }
}

fn fault_to_io(fault: &BodyFault) -> io::Error {
    match fault {
        BodyFault::Protocol(ProtocolError::RequestTimeout) => io::ErrorKind::TimedOut.into(),
        BodyFault::Protocol(e) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        BodyFault::Broken => io::ErrorKind::ConnectionAborted.into(),
    }
}
