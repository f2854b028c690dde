//! Conditional and range requests for a file: its validators (a strong `ETag`,
//! `Last-Modified`), `If-Match` / `If-Unmodified-Since` (412), `If-None-Match` /
//! `If-Modified-Since` (304), and `Range` / `If-Range` (206 or 416), evaluated in the order
//! of RFC 9110 §13.2.2.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_range_header::{parse_range_header, RangeUnsatisfiableError};

use crate::app::Environ;

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag: inode, size and modification time in nanoseconds.
    pub etag: String,
    /// The modification time, to the second (HTTP dates have no finer resolution).
    pub modified: SystemTime,
}

/// What the request's preconditions and range decide, in the order of RFC 9110 §13.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `If-Match` (else `If-Unmodified-Since`) is false: 412, nothing of the file is sent.
    PreconditionFailed,
    /// `If-None-Match` (else `If-Modified-Since`) says the client's copy is current: 304.
    NotModified,
    /// Send this part of the file.
    Send(Span),
}

/// Which part of the file to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// All of it (no range asked, an invalid or multiple-range header, or a changed file).
    Whole,
    /// One range: `len` bytes from `start`.
    Part {
        /// The first byte.
        start: u64,
        /// How many bytes.
        len: u64,
    },
    /// The range lies outside the file: 416.
    Unsatisfiable,
}

impl Validators {
    /// The validators of a file, from its metadata.
    pub fn of(meta: &Metadata) -> Self {
        let nanos = meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let seconds = u64::try_from(meta.mtime()).unwrap_or(0);
        Validators {
            etag: format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.len(), nanos),
            modified: UNIX_EPOCH + Duration::from_secs(seconds),
        }
    }

    /// How to answer a GET or HEAD of a file of `len` bytes with these validators: the
    /// preconditions first (412), then the cache's (304), then the range (206, 416).
    pub fn decide(&self, env: &Environ, len: u64) -> Decision {
        if !self.preconditions_hold(env) {
            return Decision::PreconditionFailed;
        }
        if self.not_modified(env) {
            return Decision::NotModified;
        }
        Decision::Send(self.span(env, len))
    }

    /// RFC 9110 §13.2.2 steps 1 and 2: `If-Match` (strong comparison; `*` matches, the file
    /// exists) decides when present; `If-Unmodified-Since` only without it, and only if it
    /// is a valid date.
    fn preconditions_hold(&self, env: &Environ) -> bool {
        if let Some(tags) = list_members(env, "if-match") {
            return tags.iter().any(|&tag| tag == "*" || tag == self.etag);
        }
        http_date(env, "if-unmodified-since").is_none_or(|since| self.modified <= since)
    }

    /// Steps 3 and 4: whether the client's copy is current, 304 instead of the file (GET and
    /// HEAD). `If-None-Match` (weak comparison) decides when present; `If-Modified-Since`
    /// only without it.
    fn not_modified(&self, env: &Environ) -> bool {
        if let Some(tags) = list_members(env, "if-none-match") {
            return tags.iter().any(|&tag| {
                tag == "*" || tag == self.etag || tag.strip_prefix("W/") == Some(&self.etag)
            });
        }
        http_date(env, "if-modified-since").is_some_and(|since| self.modified <= since)
    }

    /// Step 5: the part of a file of `len` bytes that the request asks for.
    fn span(&self, env: &Environ, len: u64) -> Span {
        let Some(range) = env.header("range") else {
            return Span::Whole;
        };
        if !self.if_range_holds(env) {
            return Span::Whole;
        }
        let Ok(parsed) = parse_range_header(range) else {
            return Span::Whole;
        };
        if parsed.len() != 1 {
            return Span::Whole;
        }
        match parsed.validate(len).as_deref() {
            Ok([range]) => Span::Part {
                start: *range.start(),
                len: range.end() - range.start() + 1,
            },
            Ok(_) => Span::Whole,
            Err(RangeUnsatisfiableError::Unsatisfiable) => Span::Unsatisfiable,
            Err(_) => Span::Whole,
        }
    }

    /// `If-Range`: the range applies only to the version the client names (a strong tag,
    /// or exactly the modification date).
    fn if_range_holds(&self, env: &Environ) -> bool {
        match env.header("if-range") {
            None => true,
            Some(tag) if tag.starts_with('"') => tag == self.etag,
            Some(date) => httpdate::parse_http_date(date).is_ok_and(|d| d == self.modified),
        }
    }
}

/// The members of a list header (RFC 9110 §5.6.1) over all its fields, or `None` if the
/// request has no such field. A value that is not UTF-8 is one member that matches nothing.
fn list_members<'e>(env: &'e Environ, name: &str) -> Option<Vec<&'e str>> {
    let mut fields = env
        .headers()
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| std::str::from_utf8(value).unwrap_or("\u{fffd}"))
        .peekable();
    fields.peek()?;
    let members = fields.flat_map(|value| value.split(',').map(str::trim));
    Some(members.filter(|member| !member.is_empty()).collect())
}

/// A header holding one valid HTTP date; anything else is ignored, as RFC 9110 §13.1.3 and
/// §13.1.4 ask.
fn http_date(env: &Environ, name: &str) -> Option<SystemTime> {
    env.header(name)
        .and_then(|date| httpdate::parse_http_date(date).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::environ;

    const ETAG: &str = "\"1f-d-5\"";

    fn validators() -> Validators {
        Validators {
            etag: ETAG.to_string(),
            modified: UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        }
    }

    /// The file's date moved by `seconds`, as an HTTP date.
    fn date(seconds: i64) -> String {
        let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000u64.saturating_add_signed(seconds));
        httpdate::fmt_http_date(at)
    }

    fn decide(headers: &str) -> Decision {
        let raw = format!("GET /f HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        validators().decide(&environ(&raw), 13)
    }

    const WHOLE: Decision = Decision::Send(Span::Whole);
    const HELLO: Decision = Decision::Send(Span::Part { start: 0, len: 5 });

    #[test]
    fn if_match_and_if_unmodified_since_fail_with_412() {
        let table: Vec<(String, Decision)> = vec![
            (format!("If-Match: {ETAG}\r\n"), WHOLE),
            ("If-Match: *\r\n".into(), WHOLE),
            (format!("If-Match: \"old\", {ETAG}\r\n"), WHOLE),
            (format!("If-Match: \"old\"\r\nIf-Match: {ETAG}\r\n"), WHOLE),
            ("If-Match: \"old\"\r\n".into(), Decision::PreconditionFailed),
            (
                format!("If-Match: W/{ETAG}\r\n"),
                Decision::PreconditionFailed,
            ),
            ("If-Match: \r\n".into(), Decision::PreconditionFailed),
            (format!("If-Unmodified-Since: {}\r\n", date(0)), WHOLE),
            (format!("If-Unmodified-Since: {}\r\n", date(60)), WHOLE),
            (
                format!("If-Unmodified-Since: {}\r\n", date(-1)),
                Decision::PreconditionFailed,
            ),
            ("If-Unmodified-Since: not a date\r\n".into(), WHOLE),
            (
                format!("If-Unmodified-Since: {0}, {0}\r\n", date(-1)),
                WHOLE,
            ),
        ];
        for (headers, expected) in table {
            assert_eq!(decide(&headers), expected, "{headers}");
        }
    }

    #[test]
    fn preconditions_are_evaluated_in_the_order_of_rfc_9110() {
        let table: Vec<(String, Decision)> = vec![
            // If-Match decides; If-Unmodified-Since is ignored beside it.
            (
                format!("If-Match: {ETAG}\r\nIf-Unmodified-Since: {}\r\n", date(-1)),
                WHOLE,
            ),
            (
                format!("If-Match: \"old\"\r\nIf-Unmodified-Since: {}\r\n", date(0)),
                Decision::PreconditionFailed,
            ),
            // 412 comes before 304.
            (
                format!("If-Match: \"old\"\r\nIf-None-Match: {ETAG}\r\n"),
                Decision::PreconditionFailed,
            ),
            (
                format!(
                    "If-Unmodified-Since: {}\r\nIf-Modified-Since: {}\r\n",
                    date(-1),
                    date(0)
                ),
                Decision::PreconditionFailed,
            ),
            // A resumed download of an older version: 412, not a range of the new file.
            (
                "Range: bytes=0-4\r\nIf-Match: \"old\"\r\n".into(),
                Decision::PreconditionFailed,
            ),
            (
                "Range: bytes=0-4\r\nIf-Range: \"old\"\r\nIf-Match: \"old\"\r\n".into(),
                Decision::PreconditionFailed,
            ),
            (format!("Range: bytes=0-4\r\nIf-Match: {ETAG}\r\n"), HELLO),
            (
                format!("Range: bytes=0-4\r\nIf-Unmodified-Since: {}\r\n", date(0)),
                HELLO,
            ),
            // Then If-None-Match, else If-Modified-Since.
            (
                format!("If-Match: {ETAG}\r\nIf-None-Match: {ETAG}\r\n"),
                Decision::NotModified,
            ),
            (
                format!("If-None-Match: W/{ETAG}\r\n"),
                Decision::NotModified,
            ),
            (
                format!("If-None-Match: \"a\"\r\nIf-None-Match: {ETAG}\r\n"),
                Decision::NotModified,
            ),
            (
                format!(
                    "If-None-Match: \"old\"\r\nIf-Modified-Since: {}\r\n",
                    date(0)
                ),
                WHOLE,
            ),
            (
                format!("If-Modified-Since: {}\r\n", date(0)),
                Decision::NotModified,
            ),
            (format!("If-Modified-Since: {}\r\n", date(-1)), WHOLE),
            // Then Range, within If-Range.
            ("Range: bytes=0-4\r\n".into(), HELLO),
            (format!("Range: bytes=0-4\r\nIf-Range: {ETAG}\r\n"), HELLO),
            ("Range: bytes=0-4\r\nIf-Range: \"old\"\r\n".into(), WHOLE),
            (
                "Range: bytes=20-30\r\n".into(),
                Decision::Send(Span::Unsatisfiable),
            ),
        ];
        for (headers, expected) in table {
            assert_eq!(decide(&headers), expected, "{headers}");
        }
    }
}
