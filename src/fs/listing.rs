//! The HTML page listing a directory: names (escaped), links (percent-encoded), sizes, dates.

use std::fmt::Write;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use html_escape::encode_text;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rustix::fs::{statat, AtFlags, Dir, DirEntry, FileType};

/// Bytes of a name that stay as they are in a link: RFC 3986's unreserved characters.
const LINK_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One row of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// The entry's name as the file system has it.
    name: Vec<u8>,
    /// A directory (links get a trailing `/`). Symbolic links are shown as links, without
    /// following them (their target may be outside the root).
    is_dir: bool,
    /// Size in bytes (files only).
    size: Option<u64>,
    /// Last modification.
    modified: Option<SystemTime>,
}

/// The listing page of the open directory `dir`, shown as `shown_path` (the decoded
/// request path).
pub fn page(dir: impl AsFd, shown_path: &str) -> io::Result<String> {
    let dir = dir.as_fd();
    let mut rows: Vec<Row> = Dir::read_from(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| row(dir, &entry))
        .collect();
    rows.sort_by(|a, b| (!a.is_dir, &a.name).cmp(&(!b.is_dir, &b.name)));
    let title = encode_text(shown_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         </head>\n<body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n\
         <tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n"
    );
    for row in &rows {
        write_row(&mut html, row);
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(html)
}

/// A row for a directory entry (`.` and `..` excepted); `None` if it cannot be read.
fn row(dir: impl AsFd, entry: &DirEntry) -> Option<Row> {
    let name = entry.file_name().to_bytes();
    if name == b"." || name == b".." {
        return None;
    }
    let stat = statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
    Some(Row {
        name: name.to_vec(),
        is_dir: kind == FileType::Directory,
        size: (kind == FileType::RegularFile).then_some(stat.st_size as u64),
        modified: Some(UNIX_EPOCH + Duration::from_secs(seconds)),
    })
}

fn write_row(html: &mut String, row: &Row) {
    let slash = if row.is_dir { "/" } else { "" };
    let href = percent_encode(&row.name, LINK_SAFE);
    let name = String::from_utf8_lossy(&row.name);
    let size = row.size.map_or_else(|| "-".to_string(), |n| n.to_string());
    let date = row
        .modified
        .map_or_else(String::new, httpdate::fmt_http_date);
    let _ = writeln!(
        html,
        "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{size}</td><td>{date}</td></tr>",
        encode_text(&name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(name: &[u8], is_dir: bool) -> String {
        let mut html = String::new();
        let row = Row {
            name: name.to_vec(),
            is_dir,
            size: (!is_dir).then_some(5),
            modified: None,
        };
        write_row(&mut html, &row);
        html
    }

    #[test]
    fn names_are_escaped_and_links_encoded() {
        let table: [(&[u8], bool, &str, &str); 5] = [
            (b"a.txt", false, "href=\"a.txt\"", ">a.txt<"),
            (
                b"a b<&>.txt",
                false,
                "href=\"a%20b%3C%26%3E.txt\"",
                ">a b&lt;&amp;&gt;.txt<",
            ),
            (b"sub", true, "href=\"sub/\"", ">sub/<"),
            (b"q\"'?#%", false, "href=\"q%22%27%3F%23%25\"", ">q\"'?#%<"),
            (b"\xff", false, "href=\"%FF\"", ">\u{fffd}<"),
        ];
        for (name, is_dir, href, shown) in table {
            let html = rendered(name, is_dir);
            assert!(html.contains(href), "{html}");
            assert!(html.contains(shown), "{html}");
        }
    }
}
