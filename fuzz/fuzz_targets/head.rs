//! Fuzzes `skyrocket::http::parse_head`.
//!
//! Input layout: `[max_head, max_headers, step_a, step_b, request bytes...]`;
//! the first four bytes pick the `Limits` and the sizes of the pieces the
//! request is fed in. Properties checked:
//!
//! - Feeding the request in pieces (parsing after each, as the server does)
//!   ends exactly like parsing it whole: the same head, the same bytes left,
//!   or an error with the same status, or incomplete both ways.
//! - A parsed head consumed a prefix of the input ending with an empty line,
//!   no longer than `max_head`; the rest stays in the buffer, that prefix
//!   alone parses to the same head and one byte less is incomplete.
//! - The head's accessors are consistent (non-empty method and target, the
//!   path is `*` or starts with `/`, HTTP/1.1 has a host, chunked is 1.1).
//! - Every error maps to a 4xx or 5xx status.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use skyrocket::http::{parse_head, BodyFraming, Limits, ProtocolError, RequestHead, Version};

/// What the caller can see of a head, to compare two parses.
type Summary = (
    String,
    String,
    Version,
    BodyFraming,
    bool,
    bool,
    Option<String>,
    String,
    String,
    Vec<(String, Vec<u8>)>,
);

/// A comparable outcome: the head and the bytes left, incomplete, or a status.
type Outcome = Result<Option<(Summary, Vec<u8>)>, u16>;

fn summary(h: &RequestHead) -> Summary {
    let headers = h
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_vec()))
        .collect();
    (
        h.method().into(),
        h.target().into(),
        h.version(),
        h.framing(),
        h.keep_alive(),
        h.expects_continue(),
        h.host().map(Into::into),
        h.path().into(),
        h.query().into(),
        headers,
    )
}

fn outcome(parsed: Result<Option<RequestHead>, ProtocolError>, rest: &[u8]) -> Outcome {
    match parsed {
        Ok(head) => Ok(head.map(|h| (summary(&h), rest.to_vec()))),
        Err(err) => {
            let status = err.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{err:?}"
            );
            Err(status.as_u16())
        }
    }
}

fn parse(input: &[u8], limits: &Limits) -> (Result<Option<RequestHead>, ProtocolError>, BytesMut) {
    let mut buf = BytesMut::from(input);
    (parse_head(&mut buf, limits), buf)
}

/// Feeds `input` in pieces of `steps` bytes (cycled), parsing after each.
fn parse_pieces(input: &[u8], limits: &Limits, steps: [usize; 2]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for step in steps.iter().cycle() {
        let end = input.len().min(fed + step);
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        let parsed = parse_head(&mut buf, limits);
        if !matches!(parsed, Ok(None)) || fed == input.len() {
            let rest = [&buf[..], &input[fed..]].concat();
            return outcome(parsed, &rest);
        }
    }
    unreachable!()
}

fuzz_target!(|data: &[u8]| {
    let Some((&[head_sel, count_sel, a, b], input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limits = Limits {
        max_head: if head_sel < 128 {
            Limits::default().max_head
        } else {
            usize::from(head_sel) - 112
        },
        max_headers: if count_sel < 128 {
            Limits::default().max_headers
        } else {
            usize::from(count_sel % 9)
        },
    };
    let steps = match (usize::from(a % 64), usize::from(b % 64)) {
        (0, 0) => [1, 1],
        steps => [steps.0, steps.1],
    };

    let (parsed, rest) = parse(input, &limits);
    if let Ok(Some(h)) = &parsed {
        let used = input.len() - rest.len();
        let head = &input[..used];
        assert_eq!(&rest[..], &input[used..]);
        assert!(used <= limits.max_head, "{used} > {}", limits.max_head);
        assert!(
            head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
            "{head:?}"
        );
        assert!(matches!(parse(&head[..used - 1], &limits).0, Ok(None)));
        let (alone, left) = parse(head, &limits);
        assert!(left.is_empty());
        assert_eq!(alone.ok().flatten().map(|a| summary(&a)), Some(summary(h)));

        assert!(!h.method().is_empty() && !h.target().is_empty());
        assert!(
            h.path() == "*" || h.path().starts_with('/'),
            "{:?}",
            h.path()
        );
        assert!(h.version() == Version::Http10 || h.host().is_some());
        assert!(h.framing() != BodyFraming::Chunked || h.version() == Version::Http11);
        assert!(h.headers().count() <= limits.max_headers);
    }
    let whole = outcome(parsed, &rest);
    assert_eq!(
        whole,
        parse_pieces(input, &limits, steps),
        "steps {steps:?}"
    );
});
