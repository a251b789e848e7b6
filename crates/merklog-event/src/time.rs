use crate::EventError;

/// When an event happened: RFC 3339 text kept exactly as given, and the
/// instant it names as nanoseconds since the Unix epoch.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.f]` followed by `Z` or `±HH:MM`
/// (RFC 3339 §5.6 `date-time`), with 1 to 9 fraction digits, an upper-case
/// `T` and `Z`, and a real calendar date. A leap second (`:60`) is refused:
/// Unix time has no place for it. The instant must fit in an `i64` of
/// nanoseconds (1677-09-21T00:12:43.145224192Z to
/// 2262-04-11T23:47:16.854775807Z).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurredAt {
    text: String,
    unix_nanos: i64,
}

const FIELD: &str = "occurred_at";
const SHAPE: &str = "must be an RFC 3339 date-time with an offset, like 2026-12-03T13:45:00.123Z or 2026-12-03T14:45:00+01:00 (at most 9 fraction digits)";

impl OccurredAt {
    /// Parses RFC 3339 date-time text.
    ///
    /// # Errors
    /// [`EventError::Invalid`] for field `occurred_at` when the text is not
    /// of the accepted shape, names no real date or time, or lies outside
    /// the `i64` nanosecond range.
    pub fn parse(text: &str) -> Result<Self, EventError> {
        let unix_nanos = parse_rfc3339(text)?;
        Ok(OccurredAt {
            text: text.to_owned(),
            unix_nanos,
        })
    }

    /// Returns the text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Returns nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i64 {
        self.unix_nanos
    }
}

fn shape() -> EventError {
    EventError::invalid(FIELD, SHAPE)
}

/// Reads `len` ASCII digits at `pos`.
fn digits(b: &[u8], pos: usize, len: usize) -> Result<i64, EventError> {
    let part = b.get(pos..pos + len).ok_or_else(shape)?;
    let mut v = 0i64;
    for &c in part {
        if !c.is_ascii_digit() {
            return Err(shape());
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

fn expect(b: &[u8], pos: usize, c: u8) -> Result<(), EventError> {
    if b.get(pos) == Some(&c) {
        Ok(())
    } else {
        Err(shape())
    }
}

fn parse_rfc3339(text: &str) -> Result<i64, EventError> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b'T')?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    let mut pos = 19;
    let mut nanos = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let count = pos - start;
        if count == 0 {
            return Err(shape());
        }
        if count > 9 {
            return Err(EventError::invalid(
                FIELD,
                format!("{count} fraction digits, at most 9"),
            ));
        }
        nanos = digits(b, start, count)? * 10i64.pow(9 - count as u32);
    }
    let offset_seconds = match b.get(pos) {
        Some(b'Z') => {
            pos += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, pos + 1, 2)?;
            expect(b, pos + 3, b':')?;
            let om = digits(b, pos + 4, 2)?;
            pos += 6;
            if oh > 23 || om > 59 {
                return Err(EventError::invalid(
                    FIELD,
                    "offset must be between -23:59 and +23:59",
                ));
            }
            let s = oh * 3600 + om * 60;
            if sign == b'-' {
                -s
            } else {
                s
            }
        }
        _ => return Err(shape()),
    };
    if pos != b.len() {
        return Err(shape());
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(EventError::invalid(
            FIELD,
            format!("{year:04}-{month:02}-{day:02} is not a calendar date"),
        ));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(EventError::invalid(
            FIELD,
            format!(
                "{hour:02}:{minute:02}:{second:02} is not a time of day (leap seconds are refused)"
            ),
        ));
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    // In i128: near the lower bound seconds × 10^9 alone leaves the i64
    // range although the sum with the fraction fits.
    i64::try_from(i128::from(seconds) * 1_000_000_000 + i128::from(nanos))
        .map_err(|_| {
            EventError::invalid(
                FIELD,
                "outside the range of i64 nanoseconds since 1970 (1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z)",
            )
        })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(t: &str) -> i64 {
        OccurredAt::parse(t).unwrap().unix_nanos()
    }

    fn problem(t: &str) -> String {
        OccurredAt::parse(t).unwrap_err().to_string()
    }

    #[test]
    fn computes_unix_nanos() {
        assert_eq!(nanos("1970-01-01T00:00:00Z"), 0);
        assert_eq!(nanos("1970-01-01T00:00:00.000000001Z"), 1);
        assert_eq!(nanos("1969-12-31T23:59:59.999999999Z"), -1);
        // date -u -d 2026-12-03T13:45:00Z +%s = 1796305500
        assert_eq!(nanos("2026-12-03T13:45:00.5Z"), 1_796_305_500_500_000_000);
        assert_eq!(
            nanos("2026-12-03T14:45:00.5+01:00"),
            1_796_305_500_500_000_000
        );
        assert_eq!(
            nanos("2026-12-03T08:15:00.5-05:30"),
            1_796_305_500_500_000_000
        );
        assert_eq!(nanos("2000-02-29T00:00:00Z"), 951_782_400_000_000_000);
        assert_eq!(nanos("2262-04-11T23:47:16.854775807Z"), i64::MAX);
        assert_eq!(nanos("1677-09-21T00:12:43.145224192Z"), i64::MIN);
    }

    #[test]
    fn keeps_the_text_as_given() {
        let t = OccurredAt::parse("2026-12-03T14:45:00.100+01:00").unwrap();
        assert_eq!(t.text(), "2026-12-03T14:45:00.100+01:00");
    }

    #[test]
    fn refuses_what_is_not_rfc_3339_with_an_offset() {
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T13:45:00",
            "2026-12-03 13:45:00Z",
            "2026-12-03t13:45:00Z",
            "2026-12-03T13:45:00z",
            "2026-12-03T13:45Z",
            "2026-12-03T13:45:00.Z",
            "2026-12-03T13:45:00+0100",
            "2026-12-03T13:45:00+01",
            "2026-12-03T13:45:00Z ",
            "+2026-12-03T13:45:00Z",
            "2026-12-03T13:45:00.1.2Z",
            "２026-12-03T13:45:00Z",
        ] {
            assert!(
                problem(bad).starts_with("occurred_at: must be an RFC 3339"),
                "{bad:?}"
            );
        }
        assert_eq!(
            problem("2026-12-03T13:45:00.1234567891Z"),
            "occurred_at: 10 fraction digits, at most 9"
        );
        assert!(problem("2026-02-29T00:00:00Z").contains("not a calendar date"));
        assert!(problem("2100-02-29T00:00:00Z").contains("not a calendar date"));
        assert!(problem("2026-13-01T00:00:00Z").contains("not a calendar date"));
        assert!(problem("2026-12-03T24:00:00Z").contains("not a time of day"));
        assert!(problem("2016-12-31T23:59:60Z").contains("leap seconds"));
        assert!(problem("2026-12-03T13:45:00+24:00").contains("offset"));
        assert!(problem("2262-04-11T23:47:16.854775808Z").contains("outside the range"));
        assert!(problem("1677-09-21T00:12:43.145224191Z").contains("outside the range"));
        assert!(problem("9999-12-31T23:59:59Z").contains("outside the range"));
    }
}

/// Formats `unix_nanos` as RFC 3339 in UTC (`Z`) with `fraction_digits`
/// (0–9) digits of the second, truncated: the one formatter that the
/// proto conversions, the client and the CLI print times with.
pub fn format_rfc3339(unix_nanos: i64, fraction_digits: u32) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let digits = fraction_digits.min(9);
    if digits > 0 {
        let fraction = nanos / 10_i64.pow(9 - digits);
        text.push_str(&format!(".{fraction:0width$}", width = digits as usize));
    }
    text.push('Z');
    text
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the
/// inverse of `days_from_civil`, after H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formatting_reads_back_to_the_same_instant() {
        assert_eq!(format_rfc3339(0, 9), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_rfc3339(-1, 9), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            format_rfc3339(1_764_770_400_250_000_000, 3),
            "2025-12-03T14:00:00.250Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400 * 1_000_000_000, 0),
            "2000-02-29T00:00:00Z"
        );
        for nanos in [
            0,
            -1,
            1,
            951_782_400_000_000_000,
            1_780_000_000_123_456_789,
            -5_000_000_000_000_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            let text = format_rfc3339(nanos, 9);
            assert_eq!(
                OccurredAt::parse(&text).unwrap().unix_nanos(),
                nanos,
                "{text}"
            );
        }
    }
}
