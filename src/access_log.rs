//! Access log lines in Common Log Format, under their own log target.

use std::net::IpAddr;

use time::macros::format_description;
use time::OffsetDateTime;

/// The log target of access lines, so they can be routed or silenced apart from the rest
/// (e.g. `RUST_LOG=skyrocket::access=info`).
pub const TARGET: &str = "skyrocket::access";

/// One served request, as the access log records it.
pub struct Entry<'a> {
    /// The client's address.
    pub remote: IpAddr,
    /// The request line's method.
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a str,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub protocol: &'a str,
    /// The response status code.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
}

/// Logs `entry` at info level under [`TARGET`], if that is enabled.
pub fn record(entry: &Entry<'_>) {
    if log::log_enabled!(target: TARGET, log::Level::Info) {
        log::info!(target: TARGET, "{}", format_line(entry, OffsetDateTime::now_utc()));
    }
}

/// Formats one Common Log Format line at time `now`.
pub fn format_line(entry: &Entry<'_>, now: OffsetDateTime) -> String {
    let when =
        format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    let stamp = now.format(when).unwrap_or_default();
    let bytes = match entry.bytes {
        0 => "-".to_string(),
        n => n.to_string(),
    };
    format!(
        "{} - - [{stamp}] \"{} {} {}\" {} {bytes}",
        entry.remote,
        entry.method,
        entry.target.escape_default(),
        entry.protocol,
        entry.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_format() {
        let entry = Entry {
            remote: "10.0.0.1".parse().unwrap(),
            method: "GET",
            target: "/a?b=\"c\"",
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 13,
        };
        let at = OffsetDateTime::from_unix_timestamp(971_211_336).unwrap();
        assert_eq!(
            format_line(&entry, at),
            "10.0.0.1 - - [10/Oct/2000:20:55:36 +0000] \"GET /a?b=\\\"c\\\" HTTP/1.1\" 200 13"
        );
        let empty = Entry { bytes: 0, ..entry };
        assert!(format_line(&empty, at).ends_with(" 200 -"));
    }
}
