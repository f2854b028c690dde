//! The HTML page listing a directory: names (escaped), links (percent-encoded), sizes (for
//! people, right-aligned), dates; a link to the parent except at the document root.

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

/// Units of [`readable_size`], each 1024 times the one before (bytes have none).
const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];

/// The listing page of the open directory `dir`, shown as `shown_path` (the decoded
/// request path); `parent` adds the `../` row (not at the document root).
pub fn page(dir: impl AsFd, shown_path: &str, parent: bool) -> io::Result<String> {
    let dir = dir.as_fd();
    let mut rows: Vec<Row> = Dir::read_from(dir)?
        .filter_map(Result::ok)
        .filter_map(|entry| row(dir, &entry))
        .collect();
    rows.sort_by(|a, b| (!a.is_dir, &a.name).cmp(&(!b.is_dir, &b.name)));
    let title = encode_text(shown_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         \n<style>td.size, th.size {{ text-align: right; padding: 0 1em; }}</style></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th class=\"size\">Size</th><th>Last modified</th></tr>\n"
    );
    if parent {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
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
    let size = match row.size {
        Some(n) => format!(
            "<td class=\"size\" title=\"{n} bytes\">{}</td>",
            readable_size(n)
        ),
        None => "<td class=\"size\">-</td>".to_string(),
    };
    let date = row
        .modified
        .map_or_else(String::new, httpdate::fmt_http_date);
    let _ = writeln!(
        html,
        "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td>{size}<td>{date}</td></tr>",
        encode_text(&name)
    );
}

/// A size as people read it, as Apache's listings show it: bytes below 1 KiB (`512`), then
/// one decimal below 10 of a unit (`1.2K`, `3.4M`), then whole units (`12K`, `340M`), in
/// powers of 1024.
fn readable_size(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the value would be shown as 1024 or more of a unit once rounded.
    while value >= 1023.5 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match value < 9.95 {
        true => format!("{value:.1}{}", UNITS[unit]),
        false => format!("{value:.0}{}", UNITS[unit]),
    }
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
    fn sizes_are_readable() {
        let table: [(u64, &str); 14] = [
            (0, "0"),
            (1, "1"),
            (1023, "1023"),
            (1024, "1.0K"),
            (1229, "1.2K"),
            (10_188, "9.9K"),
            (10_189, "10K"),
            (1_048_063, "1023K"),
            (1_048_064, "1.0M"),
            (3_565_158, "3.4M"),
            (3 << 20, "3.0M"),
            (500 << 20, "500M"),
            (1 << 40, "1.0T"),
            (u64::MAX, "16E"),
        ];
        for (bytes, shown) in table {
            assert_eq!(readable_size(bytes), shown, "{bytes}");
        }
    }

    #[test]
    fn size_cells_are_of_the_right_aligned_class_with_the_exact_size_on_hover() {
        let html = rendered(b"a.txt", false);
        assert!(
            html.contains("<td class=\"size\" title=\"5 bytes\">5</td>"),
            "{html}"
        );
        let html = rendered(b"sub", true);
        assert!(html.contains("<td class=\"size\">-</td>"), "{html}");
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
