//! Fuzzes `skyrocket::http::ChunkedDecoder`.
//!
//! Input layout: `[step_a, step_b, body bytes...]`. The body is decoded in
//! one piece, one byte at a time, and in pieces of `step_a`/`step_b` bytes
//! (cycled). Properties checked:
//!
//! - All three give the same decoded data and the same end: `Done` with the
//!   same bytes left over, still incomplete, or an error with the same status.
//! - The decoded data is never longer than the input (shorter by the framing
//!   when `Done`); `Data` is never empty; `NeedMore` leaves nothing unread;
//!   `Done` is sticky and consumes nothing more; errors are 4xx/5xx.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use skyrocket::http::{ChunkedDecoder, Decoded};

/// How decoding ended: `Done` with the bytes after the body, incomplete
/// (`NeedMore` after the last piece), or the error's status.
#[derive(Debug, PartialEq)]
enum End {
    Done(Vec<u8>),
    Incomplete,
    Error(u16),
}

/// Feeds `body` in pieces of `steps` bytes (cycled, 0 = decode again with no
/// new bytes); returns the concatenated data and how decoding ended.
fn decode(body: &[u8], steps: [usize; 2]) -> (Vec<u8>, End) {
    let mut decoder = ChunkedDecoder::new();
    let (mut src, mut out, mut fed) = (BytesMut::new(), Vec::new(), 0);
    for step in steps.iter().cycle() {
        let end = body.len().min(fed + step);
        src.extend_from_slice(&body[fed..end]);
        fed = end;
        loop {
            match decoder.decode(&mut src) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty());
                    out.extend_from_slice(&data);
                }
                Ok(Decoded::NeedMore) => {
                    assert!(src.is_empty() && !decoder.is_done());
                    break;
                }
                Ok(Decoded::Done) => {
                    let left = src.len();
                    assert_eq!(decoder.decode(&mut src), Ok(Decoded::Done));
                    assert!(decoder.is_done() && src.len() == left);
                    return (out, End::Done([&src[..], &body[fed..]].concat()));
                }
                Err(err) => {
                    let status = err.status();
                    assert!(
                        status.is_client_error() || status.is_server_error(),
                        "{err:?}"
                    );
                    return (out, End::Error(status.as_u16()));
                }
            }
        }
        if fed == body.len() {
            return (out, End::Incomplete);
        }
    }
    unreachable!()
}

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let steps = match (usize::from(a % 64), usize::from(b % 64)) {
        (0, 0) => [1, 1],
        steps => [steps.0, steps.1],
    };

    let whole = decode(body, [body.len().max(1); 2]);
    match &whole.1 {
        End::Done(left) => {
            assert!(body.ends_with(left));
            assert!(whole.0.len() + left.len() + 5 <= body.len());
        }
        _ => assert!(whole.0.len() <= body.len()),
    }
    assert_eq!(whole, decode(body, [1, 1]), "byte by byte");
    assert_eq!(whole, decode(body, steps), "steps {steps:?}");
});
