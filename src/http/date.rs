//! The `Date` header value (RFC 9110 §6.6.1), cached per thread.

use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// Last second that `httpdate` can format (9999-12-31T23:59:59Z); later
/// clocks are clamped to it instead of making `httpdate` panic.
const MAX_SECS: u64 = 253_402_300_799;

thread_local! {
    /// The last formatted date and the Unix second it was formatted for, so a
    /// busy thread formats at most once per second.
    static CACHE: Cell<Option<(u64, [u8; DATE_LEN])>> = const { Cell::new(None) };
}

/// The current time as an IMF-fixdate, e.g. `b"Sun, 06 Nov 1994 08:49:37 GMT"`.
///
/// Formatted at most once per second per thread; clocks before 1970 or after
/// year 9999 are clamped into range.
pub fn http_date() -> [u8; DATE_LEN] {
    // The coarse clock (a few ms of resolution) is a fraction of the cost of the precise
    // one, and a date shows whole seconds.
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    CACHE.with(|cache| match cache.get() {
        Some((cached_secs, date)) if cached_secs == secs => date,
        _ => {
            let date = format_secs(secs);
            cache.set(Some((secs, date)));
            date
        }
    })
}

/// Formats `secs` after the Unix epoch (clamped to what `httpdate` accepts).
fn format_secs(secs: u64) -> [u8; DATE_LEN] {
    let time = UNIX_EPOCH + Duration::from_secs(secs.min(MAX_SECS));
    let text = httpdate::fmt_http_date(time);
    let mut date = [b' '; DATE_LEN];
    for (slot, byte) in date.iter_mut().zip(text.bytes()) {
        *slot = byte;
    }
    date
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_parses_back_and_is_29_bytes() {
        let date = http_date();
        assert_eq!(date.len(), 29);
        let text = std::str::from_utf8(&date).expect("ASCII date");
        let parsed = httpdate::parse_http_date(text).expect("IMF-fixdate");
        let now = std::time::SystemTime::now();
        let age = now.duration_since(parsed).unwrap_or_default();
        assert!(age < Duration::from_secs(5), "{text}");
    }

    #[test]
    fn cached_value_is_reused_within_a_second() {
        let first = http_date();
        let second = http_date();
        let a = httpdate::parse_http_date(std::str::from_utf8(&first).unwrap_or("")).ok();
        let b = httpdate::parse_http_date(std::str::from_utf8(&second).unwrap_or("")).ok();
        assert!(a.is_some() && a <= b);
    }

    #[test]
    fn format_table() {
        let cases: [(u64, &[u8; 29]); 4] = [
            (0, b"Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, b"Sun, 06 Nov 1994 08:49:37 GMT"),
            (MAX_SECS, b"Fri, 31 Dec 9999 23:59:59 GMT"),
            (u64::MAX, b"Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, expected) in cases {
            assert_eq!(&format_secs(secs), expected, "{secs}");
        }
    }
}
