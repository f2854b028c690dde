//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! The decoder is a byte-at-a-time state machine over the framing (size
//! lines, CRLFs, trailers) and hands chunk data out zero-copy, so input split
//! at any byte boundary decodes the same. Choices where the RFC leaves room:
//!
//! - Line ends must be CRLF; a bare LF is rejected, as lenient line endings in
//!   chunked framing are a known request-smuggling vector.
//! - Whitespace (BWS) is accepted before `;` and `=` and, as hyper and Go do,
//!   before the CRLF that ends a size line.
//! - Chunk extensions are checked against the grammar
//!   (`;name[=token|quoted-string]`) and then ignored, as are trailer fields
//!   (`name: value`, the name a token).
//! - Sizes have at most 16 hex digits; a size line (extensions included) at
//!   most 4 KiB; the trailer section at most 16 KiB.
//! - With a limit ([`ChunkedDecoder::with_limit`]), a chunk whose size takes
//!   the body past it is refused (413) as soon as its size line says so, not
//!   once its bytes have been waited for.

use bytes::{Bytes, BytesMut};

use super::error::{bad_request, ProtocolError};
use super::head::is_tchar;

/// Most hex digits in a chunk size: 16 digits fill a `u64`, so a size can
/// never overflow, and a peer cannot stream zeros forever.
const MAX_SIZE_DIGITS: u8 = 16;

/// Most bytes on one size line: size, extensions and CRLF.
const MAX_SIZE_LINE: usize = 4096;

/// Most bytes in the trailer section, final CRLF included.
const MAX_TRAILERS: usize = 16 * 1024;

/// One step of the chunked-body grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size,
    /// Whitespace after the size or an extension: `;` or CR may follow.
    SizeBws,
    /// After `;`: whitespace, then an extension name.
    ExtNameStart,
    /// Inside an extension name.
    ExtName,
    /// Whitespace after an extension name: `=`, `;` or CR may follow.
    ExtNameBws,
    /// After `=`: whitespace, then a token or quoted-string value.
    ExtValueStart,
    /// Inside a token extension value.
    ExtToken,
    /// Inside a quoted-string extension value.
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtQuotedPair,
    /// After the CR ending a size line: LF must follow.
    SizeLf,
    /// Inside chunk data, with this many bytes left.
    Data {
        /// Bytes of the current chunk not yet handed out.
        remaining: u64,
    },
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field: LF must follow.
    TrailerLf,
    /// After the CR of the final empty line: LF must follow.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one call to [`ChunkedDecoder::decode`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes (part or all of a chunk), split from the input.
    Data(Bytes),
    /// The input holds nothing more to decode; read more and call again.
    NeedMore,
    /// The last chunk and the trailer section have been consumed.
    Done,
}

/// Decodes one chunked request body, fed in pieces of any size.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    /// Where in the grammar the decoder is.
    state: State,
    /// The chunk size read so far on the current size line.
    size: u64,
    /// Hex digits read on the current size line, to bound them.
    digits: u8,
    /// Bytes of the current size line, or of the trailer section, to bound
    /// them.
    section_len: usize,
    /// The chunk sizes of the body so far, the current one excepted.
    total: u64,
    /// The largest body accepted: past it, 413.
    limit: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body, of any length.
    pub fn new() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            section_len: 0,
            total: 0,
            limit: u64::MAX,
        }
    }

    /// A decoder for a body of at most `limit` bytes: a size that takes the
    /// body past it is answered with [`ProtocolError::PayloadTooLarge`] at
    /// once.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            limit,
            ..Self::new()
        }
    }

    /// Consumes bytes from the front of `src`.
    ///
    /// Returns `Data` with up to the available bytes of the current chunk
    /// (split from `src`, zero-copy); `NeedMore` when `src` holds no complete
    /// next element (everything consumable was consumed, the state kept);
    /// `Done` once the last chunk and the trailer section's final CRLF have
    /// been consumed (bytes after them stay in `src`: pipelined requests).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        self.consume_framing(src)?;
        match self.state {
            State::Done => Ok(Decoded::Done),
            State::Data { remaining } if !src.is_empty() => {
                Ok(Decoded::Data(self.take_data(src, remaining)))
            }
            _ => Ok(Decoded::NeedMore),
        }
    }

    /// Whether the whole body has been decoded.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Steps over framing bytes until chunk data, the end, or the input's end.
    fn consume_framing(&mut self, src: &mut BytesMut) -> Result<(), ProtocolError> {
        let mut used = 0;
        for &byte in src.iter() {
            if matches!(self.state, State::Data { .. } | State::Done) {
                break;
            }
            self.step(byte)?;
            used += 1;
        }
        let _ = src.split_to(used);
        Ok(())
    }

    /// Splits off up to `remaining` bytes of chunk data from `src`.
    fn take_data(&mut self, src: &mut BytesMut, remaining: u64) -> Bytes {
        let available = src.len();
        let taken = usize::try_from(remaining).map_or(available, |left| left.min(available));
        let left = remaining.saturating_sub(taken as u64);
        self.state = match left {
            0 => State::DataCr,
            _ => State::Data { remaining: left },
        };
        src.split_to(taken).freeze()
    }

    /// Advances the state machine over one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), ProtocolError> {
        self.count_section_byte()?;
        self.state = match self.state {
            State::Size => self.size_digit(byte)?,
            State::SizeLf => self.end_size_line(byte)?,
            State::DataCr => expect(byte, b'\r', State::DataLf)?,
            State::DataLf => expect(byte, b'\n', State::Size)?,
            State::ExtQuoted | State::ExtQuotedPair => quoted_step(self.state, byte)?,
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => trailer_step(self.state, byte)?,
            State::Data { .. } | State::Done => self.state,
            State::SizeBws
            | State::ExtNameStart
            | State::ExtName
            | State::ExtNameBws
            | State::ExtValueStart
            | State::ExtToken => extension_step(self.state, byte)?,
        };
        Ok(())
    }

    /// Counts a byte against the bound of the current section, if it has one.
    fn count_section_byte(&mut self) -> Result<(), ProtocolError> {
        let (limit, error) = match self.state {
            State::Data { .. } | State::DataCr | State::DataLf | State::Done => return Ok(()),
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => (MAX_TRAILERS, bad_request!("trailer section too large")),
            _ => (MAX_SIZE_LINE, bad_request!("chunk size line too long")),
        };
        self.section_len += 1;
        if self.section_len > limit {
            Err(error)
        } else {
            Ok(())
        }
    }

    /// Handles a byte while reading the chunk size.
    fn size_digit(&mut self, byte: u8) -> Result<State, ProtocolError> {
        let Some(digit) = (byte as char).to_digit(16) else {
            return match self.digits {
                0 => Err(bad_request!("missing chunk size")),
                _ => after_value(byte, State::SizeBws),
            };
        };
        if self.digits == MAX_SIZE_DIGITS {
            return Err(bad_request!("chunk size too large"));
        }
        self.digits += 1;
        self.size = (self.size << 4) | u64::from(digit);
        match self.total.checked_add(self.size) {
            Some(total) if total <= self.limit => Ok(State::Size),
            _ => Err(ProtocolError::PayloadTooLarge),
        }
    }

    /// Handles the LF ending a size line: data follows, or the trailers.
    fn end_size_line(&mut self, byte: u8) -> Result<State, ProtocolError> {
        expect(byte, b'\n', State::Size)?;
        let size = std::mem::take(&mut self.size);
        self.total = self.total.saturating_add(size);
        self.digits = 0;
        self.section_len = 0;
        Ok(match size {
            0 => State::TrailerStart,
            remaining => State::Data { remaining },
        })
    }
}

/// `next` if `byte` is `expected`, else an invalid-framing error.
fn expect(byte: u8, expected: u8, next: State) -> Result<State, ProtocolError> {
    if byte == expected {
        Ok(next)
    } else {
        Err(bad_request!("invalid line ending in chunked body"))
    }
}

/// What may follow a size or an extension: whitespace (state `blank`), the
/// next extension, or the end of the line.
fn after_value(byte: u8, blank: State) -> Result<State, ProtocolError> {
    match byte {
        b' ' | b'\t' => Ok(blank),
        b';' => Ok(State::ExtNameStart),
        b'\r' => Ok(State::SizeLf),
        _ => Err(bad_request!("invalid chunk size line")),
    }
}

/// One byte of an unquoted part of the chunk extensions.
fn extension_step(state: State, byte: u8) -> Result<State, ProtocolError> {
    let blank = matches!(byte, b' ' | b'\t');
    match state {
        State::ExtNameStart | State::ExtValueStart if blank => Ok(state),
        State::ExtNameStart if is_tchar(byte) => Ok(State::ExtName),
        State::ExtValueStart if byte == b'"' => Ok(State::ExtQuoted),
        State::ExtValueStart if is_tchar(byte) => Ok(State::ExtToken),
        State::ExtName | State::ExtToken if is_tchar(byte) => Ok(state),
        State::ExtName | State::ExtNameBws if byte == b'=' => Ok(State::ExtValueStart),
        State::ExtName | State::ExtNameBws => after_value(byte, State::ExtNameBws),
        State::SizeBws | State::ExtToken => after_value(byte, State::SizeBws),
        _ => Err(bad_request!("invalid chunk extension")),
    }
}

/// One byte of a quoted-string extension value (RFC 9110 §5.6.4).
fn quoted_step(state: State, byte: u8) -> Result<State, ProtocolError> {
    match (state, byte) {
        (State::ExtQuoted, b'"') => Ok(State::SizeBws),
        (State::ExtQuoted, b'\\') => Ok(State::ExtQuotedPair),
        (State::ExtQuoted | State::ExtQuotedPair, _) if is_field_text(byte) => Ok(State::ExtQuoted),
        _ => Err(bad_request!("invalid chunk extension")),
    }
}

/// One byte of the trailer section.
fn trailer_step(state: State, byte: u8) -> Result<State, ProtocolError> {
    match (state, byte) {
        (State::TrailerStart, b'\r') => Ok(State::EndLf),
        (State::TrailerStart | State::TrailerName, _) if is_tchar(byte) => Ok(State::TrailerName),
        (State::TrailerName, b':') => Ok(State::TrailerValue),
        (State::TrailerValue, b'\r') => Ok(State::TrailerLf),
        (State::TrailerValue, _) if is_field_text(byte) => Ok(State::TrailerValue),
        (State::TrailerLf, b'\n') => Ok(State::TrailerStart),
        (State::EndLf, b'\n') => Ok(State::Done),
        _ => Err(bad_request!("invalid trailer section")),
    }
}

/// HTAB, SP, VCHAR or obs-text: what field values and quoted strings hold.
fn is_field_text(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || byte.is_ascii_graphic() || byte >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Complete chunked bodies: (wire bytes, decoded body, bytes left after).
    const VALID: &[(&[u8], &[u8], &[u8])] = &[
        (b"0\r\n\r\n", b"", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
            b"",
        ),
        (
            b"a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
            b"0123456789abcdefghij",
            b"",
        ),
        (
            b"0000000000000010\r\n0123456789abcdef\r\n0\r\n\r\n",
            b"0123456789abcdef",
            b"",
        ),
        (b"3\r\n\r\n\n\r\n0\r\n\r\n", b"\r\n\n", b""),
        (b"3;name\r\nabc\r\n0\r\n\r\n", b"abc", b""),
        (b"3;name=value\r\nabc\r\n0;last\r\n\r\n", b"abc", b""),
        (
            b"3 ; a = b ; c=\"q \\\" \\\\ x;\"\r\nabc\r\n0\r\n\r\n",
            b"abc",
            b"",
        ),
        (b"3;a;b=1;c\t=\t\"\"\r\nabc\r\n0\r\n\r\n", b"abc", b""),
        (b"3 \r\nabc\r\n0\t\r\n\r\n", b"abc", b""),
        (b"3;a \r\nabc\r\n0;b=c \r\n\r\n", b"abc", b""),
        (
            b"0\r\nExpires: never\r\nX-A:\tb c\xff\r\nX-Empty:\r\n\r\n",
            b"",
            b"",
        ),
        (b"0\r\n\r\nGET / HTTP/1.1\r\n", b"", b"GET / HTTP/1.1\r\n"),
        (b"2\r\nab\r\n0\r\nT: v\r\n\r\n\r\n", b"ab", b"\r\n"),
    ];

    /// Malformed chunked bodies (all 400).
    const INVALID: &[&[u8]] = &[
        b"\r\n",
        b";a\r\n",
        b" 5\r\n",
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"0x5\r\n",
        b"00000000000000001\r\n",
        b"10000000000000000\r\n",
        b"5\n",
        b"5\r\r\n",
        b"5\rhello",
        b"5 5\r\n",
        b"5\x00\r\n",
        b"5\r\nhelloX",
        b"5\r\nhello\rX",
        b"5\r\nhello\n",
        b"5\r\nhello\r\r\n",
        b"5;\r\n",
        b"5;;a\r\n",
        b"5;=v\r\n",
        b"5;a=\r\n",
        b"5;a=;b\r\n",
        b"5;a b\r\n",
        b"5;a=b c\r\n",
        b"5;a=\"x\r\n",
        b"5;a=\"x\"y\r\n",
        b"5;a=\"\x01\"\r\n",
        b"5;a=\"\\\x01\"\r\n",
        b"5;a\x7f\r\n",
        b"5;a=b\n",
        b"0\r\n\n",
        b"0\r\n\r\r",
        b"0\r\nX-A b\r\n\r\n",
        b"0\r\n: v\r\n\r\n",
        b"0\r\nX :v\r\n\r\n",
        b"0\r\n\tX: v\r\n\r\n",
        b"0\r\nX: v\r\n c\r\n\r\n",
        b"0\r\nX: a\x00\r\n\r\n",
        b"0\r\nX: a\n\r\n",
        b"0\r\nX: a\r\r\n",
    ];

    /// The decoded body, whether `Done` was reached, and the bytes left.
    type Outcome = Result<(Vec<u8>, bool, Vec<u8>), ProtocolError>;

    /// Feeds `pieces` in turn; returns the decoded body, whether `Done` was
    /// reached, and the bytes left over (unfed pieces included).
    fn decode_pieces(pieces: &[&[u8]]) -> Outcome {
        decode_with(ChunkedDecoder::new(), pieces)
    }

    /// [`decode_pieces`] with a given decoder.
    fn decode_with(mut decoder: ChunkedDecoder, pieces: &[&[u8]]) -> Outcome {
        let mut src = BytesMut::new();
        let mut body = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            src.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut src)? {
                    Decoded::Data(data) => body.extend_from_slice(&data),
                    Decoded::NeedMore => break,
                    Decoded::Done => {
                        assert!(decoder.is_done());
                        let unfed = pieces.get(index + 1..).unwrap_or_default().concat();
                        return Ok((body, true, [&src[..], &unfed].concat()));
                    }
                }
            }
        }
        assert!(!decoder.is_done());
        Ok((body, false, src.to_vec()))
    }

    fn expected(body: &[u8], rest: &[u8]) -> Outcome {
        Ok((body.to_vec(), true, rest.to_vec()))
    }

    #[test]
    fn valid_bodies_decode() {
        for &(wire, body, rest) in VALID {
            let decoded = decode_pieces(&[wire]);
            assert_eq!(
                decoded,
                expected(body, rest),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for &(wire, body, rest) in VALID {
            let pieces: Vec<&[u8]> = wire.chunks(1).collect();
            let decoded = decode_pieces(&pieces);
            assert_eq!(
                decoded,
                expected(body, rest),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn every_two_piece_split() {
        for &(wire, body, rest) in VALID {
            for at in 0..=wire.len() {
                let (first, second) = wire.split_at(at);
                let decoded = decode_pieces(&[first, second]);
                assert_eq!(
                    decoded,
                    expected(body, rest),
                    "{at} {:?}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    #[test]
    fn every_truncation_needs_more() {
        for &(wire, _, rest) in VALID {
            let complete = wire.len() - rest.len();
            for end in 0..complete {
                let prefix = wire.get(..end).unwrap_or_default();
                let decoded = decode_pieces(&[prefix]).map(|(_, done, _)| done);
                assert_eq!(decoded, Ok(false), "{:?}", String::from_utf8_lossy(prefix));
            }
        }
    }

    #[test]
    fn invalid_bodies_are_bad_requests() {
        for &wire in INVALID {
            let whole = decode_pieces(&[wire]).map_err(|e| e.status().as_u16());
            assert_eq!(
                whole.map(|_| ()),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
            let pieces: Vec<&[u8]> = wire.chunks(1).collect();
            let bytewise = decode_pieces(&pieces).map_err(|e| e.status().as_u16());
            assert_eq!(
                bytewise.map(|_| ()),
                Err(400),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn section_bounds() {
        let ext = |len: usize| format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(len)).into_bytes();
        let trailer = |count: usize| {
            let fields = format!("X: {}\r\n", "v".repeat(1021)).repeat(count);
            format!("0\r\n{fields}\r\n").into_bytes()
        };
        type Body<'a> = Result<&'a [u8], u16>;
        let cases: &[(Vec<u8>, Body)] = &[
            (ext(MAX_SIZE_LINE - 4), Ok(b"a")),
            (ext(MAX_SIZE_LINE - 3), Err(400)),
            (trailer(15), Ok(b"")),
            (trailer(16), Err(400)),
            (b"ffffffffffffffff\r\nab".to_vec(), Ok(b"ab")),
        ];
        for (wire, expected) in cases {
            let decoded = decode_pieces(&[wire]).map_err(|e| e.status().as_u16());
            let body = decoded
                .as_ref()
                .map(|(body, _, _)| body.as_slice())
                .map_err(|&c| c);
            assert_eq!(body, *expected, "{}", wire.len());
        }
    }

    /// A body limit: 413 as soon as a size line takes the body past it (before the size line
    /// ends, and without waiting for the chunk's bytes); up to it, the body decodes.
    #[test]
    fn size_limits() {
        type Body<'a> = Result<(&'a [u8], bool), u16>;
        let cases: &[(u64, &[u8], Body)] = &[
            (
                10,
                b"a\r\n0123456789\r\n0\r\n\r\n",
                Ok((b"0123456789", true)),
            ),
            (
                10,
                b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n",
                Ok((b"0123456789", true)),
            ),
            (
                10,
                b"0000000000000005\r\n01234\r\n0\r\n\r\n",
                Ok((b"01234", true)),
            ),
            (10, b"5\r\n01234\r\n5\r\n012", Ok((b"01234012", false))),
            (10, b"a", Ok((b"", false))),
            (10, b"b", Err(413)),
            (10, b"b\r\n", Err(413)),
            (10, b"0b;ext=1\r\n", Err(413)),
            (10, b"ffffffffffffffff\r\n", Err(413)),
            (10, b"5\r\n01234\r\n6", Err(413)),
            (10, b"5\r\n01234\r\n6\r\n012345\r\n0\r\n\r\n", Err(413)),
            (0, b"0\r\n\r\n", Ok((b"", true))),
            (0, b"1", Err(413)),
            (u64::MAX, b"ffffffffffffffff\r\nab", Ok((b"ab", false))),
            (10, b"g", Err(400)),
            (10, b"5\n", Err(400)),
        ];
        for &(limit, wire, expected) in cases {
            let pieces: [&[&[u8]]; 2] = [&[wire], &wire.chunks(1).collect::<Vec<_>>()];
            for pieces in pieces {
                let decoded = decode_with(ChunkedDecoder::with_limit(limit), pieces);
                let decoded = decoded.map_err(|e| e.status().as_u16());
                let body = (decoded.as_ref())
                    .map(|(body, done, _)| (body.as_slice(), *done))
                    .map_err(|&code| code);
                assert_eq!(
                    body,
                    expected,
                    "{limit} {:?}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    #[test]
    fn data_is_split_zero_copy_and_state_is_kept() {
        let mut decoder = ChunkedDecoder::default();
        let mut src = BytesMut::from(&b"a\r\n01234"[..]);
        assert_eq!(
            decoder.decode(&mut src),
            Ok(Decoded::Data(Bytes::from_static(b"01234")))
        );
        assert_eq!(decoder.decode(&mut src), Ok(Decoded::NeedMore));
        src.extend_from_slice(b"56789\r\n0\r\n\r\nNEXT");
        assert_eq!(
            decoder.decode(&mut src),
            Ok(Decoded::Data(Bytes::from_static(b"56789")))
        );
        assert!(!decoder.is_done());
        assert_eq!(decoder.decode(&mut src), Ok(Decoded::Done));
        assert_eq!(decoder.decode(&mut src), Ok(Decoded::Done));
        assert!(decoder.is_done());
        assert_eq!(&src[..], b"NEXT");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789abcdefABCDEFxyz;=\" \t\r\n:\\\x00\xff";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let wire: Vec<u8> = (0..len)
                .map(|_| {
                    alphabet
                        .get((next() as usize) % alphabet.len())
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            let at = (next() as usize) % (wire.len() + 1);
            let (first, second) = wire.split_at(at);
            let _ = decode_pieces(&[first, second]);
        }
    }
}
