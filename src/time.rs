//! Time as chg records it: RFC 3339 in UTC to the second, within the range every git reads
//! alike, with offsets a clock can have. One home for these rules; the model, the context
//! and the readers use them.

use jiff::Timestamp;

/// Formats a timestamp the way files store it: RFC 3339, UTC, whole seconds.
pub fn format_timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses an RFC 3339 timestamp with an explicit offset (`Z` or `+02:00`).
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    if !offset_is_real(text.trim()) {
        return Err(format!(
            "`{}` has a UTC offset no clock has (at most 14 hours)",
            text.escape_debug()
        ));
    }
    text.trim().parse::<Timestamp>().map_err(|_| {
        format!(
            "`{}` is not an RFC 3339 timestamp with a time zone (like 2025-01-27T10:30:00Z)",
            text.escape_debug()
        )
    })
}

/// Whether a trailing UTC offset (`+01:00`, `-0530`) is one a clock can have: at most 14
/// hours. Parsers accept up to 25 hours, and git's fsck rejects such a commit.
pub(crate) fn offset_is_real(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let tail = |n: usize| b.len() >= n && matches!(b[b.len() - n], b'+' | b'-');
    let (hh, mm) = if tail(6) && b[b.len() - 3] == b':' {
        (&b[b.len() - 5..b.len() - 3], &b[b.len() - 2..])
    } else if tail(5) && digits(&b[b.len() - 4..]) {
        (&b[b.len() - 4..b.len() - 2], &b[b.len() - 2..])
    } else {
        return true;
    };
    if !digits(hh) || !digits(mm) {
        return true;
    }
    let minutes = |d: &[u8]| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0');
    minutes(hh) * 60 + minutes(mm) <= 14 * 60 && minutes(mm) < 60
}

/// The first second chg records: the Unix epoch.
const FIRST_SECOND: i64 = 0;
/// One past the last second chg records, 2106-02-07T06:28:16Z: commit times beyond 32
/// unsigned bits are not read alike by every git (libgit2 wrapped them).
const END_SECOND: i64 = 1 << 32;

/// `t` if chg can record it: from 1970 up to 2106-02-07.
pub fn check_time(t: Timestamp) -> Result<Timestamp, String> {
    if (FIRST_SECOND..END_SECOND).contains(&t.as_second()) {
        Ok(t)
    } else {
        Err(format!(
            "{t} is outside the times chg records (1970-01-01 to 2106-02-07); check the clock or CHG_NOW"
        ))
    }
}
