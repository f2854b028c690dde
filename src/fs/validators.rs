//! Conditional and range requests for a file: its validators (a strong `ETag`,
//! `Last-Modified`), `If-None-Match` / `If-Modified-Since` (304), and `Range` / `If-Range`
//! (206 or 416), as RFC 9110 §13 and §14 describe them.

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

    /// Whether the client's copy is current: 304 instead of the file (GET and HEAD).
    /// `If-None-Match` decides when present; `If-Modified-Since` only without it.
    pub fn not_modified(&self, env: &Environ) -> bool {
        if let Some(tags) = env.header("if-none-match") {
            return tags.split(',').map(str::trim).any(|tag| {
                tag == "*" || tag == self.etag || tag.strip_prefix("W/") == Some(&self.etag)
            });
        }
        env.header("if-modified-since")
            .and_then(|date| httpdate::parse_http_date(date).ok())
            .is_some_and(|since| self.modified <= since)
    }

    /// The part of a file of `len` bytes that the request asks for.
    pub fn span(&self, env: &Environ, len: u64) -> Span {
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
