//! From a request path to an open file under the document root, refusing every way out.
//!
//! Refused, all alike (the caller answers 404, so a refusal tells nothing about what exists):
//! percent-encoded slashes, backslashes and NUL; backslashes and NUL after decoding; `.` and
//! `..` segments (also when percent-encoded). What remains is opened with `openat2` and
//! `RESOLVE_BENEATH` relative to the root's descriptor: the kernel refuses any resolution that
//! leaves the root (a symbolic link pointing outside, or any absolute link), with no window
//! between checking a path and opening it.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use percent_encoding::percent_decode_str;
use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

/// Encoded bytes that would change the meaning of the path once decoded.
const ENCODED_FORBIDDEN: [&str; 3] = ["%2f", "%5c", "%00"];

/// A request path opened under the root.
#[derive(Debug)]
pub struct Opened {
    /// The file or directory, open for reading.
    pub file: File,
    /// The request path ended with `/` (a directory is addressed as one).
    pub trailing_slash: bool,
    /// The path names the document root itself (it has no parent to link to).
    pub at_root: bool,
}

/// Opens `raw_path` (the request-target's path, still percent-encoded) under the directory
/// `root`; `None` for anything refused or missing.
pub fn open_beneath(root: impl AsFd, raw_path: &str) -> Option<Opened> {
    let segments = segments(raw_path)?;
    let at_root = segments.is_empty();
    let relative = match at_root {
        true => b".".to_vec(),
        false => segments.join(&b'/'),
    };
    let file = open_relative(root, &relative).ok()?;
    Some(Opened {
        file,
        trailing_slash: raw_path.ends_with('/'),
        at_root,
    })
}

/// Opens `relative` (no `.` or `..` segments) beneath the directory `dir`. Non-blocking, so
/// that a FIFO cannot hold the worker; it makes no difference to regular files.
pub fn open_relative(dir: impl AsFd, relative: &[u8]) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let fd = openat2(dir, relative, flags, Mode::empty(), resolve)?;
    Ok(File::from(fd))
}

/// The decoded, non-empty segments of a path, or `None` if the path is refused.
fn segments(raw_path: &str) -> Option<Vec<Vec<u8>>> {
    if !raw_path.starts_with('/') || raw_path.contains('\\') {
        return None;
    }
    let lower = raw_path.to_ascii_lowercase();
    if ENCODED_FORBIDDEN.iter().any(|bad| lower.contains(bad)) {
        return None;
    }
    raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect()
}

fn decode_segment(raw: &str) -> Option<Vec<u8>> {
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    let dots = decoded == b"." || decoded == b"..";
    let forbidden = decoded.iter().any(|&b| b == 0 || b == b'\\' || b == b'/');
    (!dots && !forbidden).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_table() {
        let table: [(&str, Option<&[&str]>); 16] = [
            ("/", Some(&[])),
            ("/a/b.txt", Some(&["a", "b.txt"])),
            ("//a///b/", Some(&["a", "b"])),
            ("/a%20b", Some(&["a b"])),
            ("/%3C%26%3E", Some(&["<&>"])),
            ("/..", None),
            ("/a/../b", None),
            ("/%2e%2e/x", None),
            ("/%2E./x", None),
            ("/./x", None),
            ("/a%2fb", None),
            ("/a%2Fb", None),
            ("/a%5cb", None),
            ("/a\\b", None),
            ("/a%00b", None),
            ("relative", None),
        ];
        for (raw, expected) in table {
            let expected: Option<Vec<Vec<u8>>> =
                expected.map(|e| e.iter().map(|s| s.as_bytes().to_vec()).collect());
            assert_eq!(segments(raw), expected, "{raw}");
        }
    }

    #[test]
    fn dots_inside_names_are_names() {
        assert_eq!(
            segments("/a..b/...").unwrap(),
            vec![b"a..b".to_vec(), b"...".to_vec()]
        );
    }
}
