//! Datetimes as systems write them, read without an engine's format machinery.
//!
//! A datetime column with no declared format accepts ISO 8601 / RFC 3339 as exports, logs and
//! APIs write it: `2026-02-23T18:54:44`, a space or a lower-case `t` for the `T`, a fraction
//! of a second after `.` or `,`, and no zone (kept as written), `Z`, or an offset (converted to
//! UTC). A hand-written reader does this in one pass over the bytes; general format parsing
//! costs about a microsecond a value, which at ten million rows is seconds.

/// Microseconds since 1970-01-01T00:00:00 of the datetime `s` (UTC when it carries a zone;
/// as written when not), or `None` when `s` is no such datetime or names no real instant
/// (February 30th, hour 24, an offset of a day or more).
pub fn iso_datetime_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if matches!(b.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start < 6 {
                micros = micros * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        let digits = at - start;
        if !(1..=9).contains(&digits) {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset = zone_offset_seconds(&b[at..])?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    Some(seconds * 1_000_000 + micros)
}

/// Days since 1970-01-01 of the ISO date `s` (`YYYY-MM-DD`), or `None` when `s` is no such
/// date or names no real day.
pub fn iso_date_days(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        b[from..from + len].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// The offset in seconds east of UTC of a zone suffix: nothing, `Z`, `±HH`, `±HHMM` or
/// `±HH:MM`.
fn zone_offset_seconds(z: &[u8]) -> Option<i64> {
    let sign = match z.first() {
        None => return Some(0),
        Some(b'Z' | b'z') if z.len() == 1 => return Some(0),
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let two = |at: usize| -> Option<i64> {
        let d = z.get(at..at + 2)?;
        (d[0].is_ascii_digit() && d[1].is_ascii_digit())
            .then(|| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0'))
    };
    let hours = two(1)?;
    let minutes = match z.len() {
        3 => 0,
        5 => two(3)?,
        6 if z[3] == b':' => two(4)?,
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3_600 + minutes * 60))
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

/// Days from 1970-01-01 to the proleptic Gregorian date (year, month, day).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years counted from March, so that the leap day ends a year.
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
    #[test]
    fn iso_dates_are_days_since_the_epoch() {
        assert_eq!(iso_date_days("1970-01-01"), Some(0));
        assert_eq!(iso_date_days("2000-03-01"), Some(11_017));
        assert_eq!(iso_date_days("1969-12-31"), Some(-1));
        // A date is the datetime at its midnight.
        assert_eq!(
            iso_date_days("2024-02-29").map(|d| d * 86_400_000_000),
            iso_datetime_micros("2024-02-29T00:00:00")
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "2024-01-01T00",
        ] {
            assert_eq!(iso_date_days(bad), None, "{bad}");
        }
    }

    use super::*;
    use chrono::{DateTime, NaiveDateTime};
    use proptest::prelude::*;

    const AT: i64 = 1_771_872_884_000_000; // 2026-02-23T18:54:44Z

    #[test]
    fn the_forms_systems_write() {
        for s in [
            "2026-02-23T18:54:44",
            "2026-02-23 18:54:44",
            "2026-02-23t18:54:44",
            "2026-02-23T18:54:44Z",
            "2026-02-23T18:54:44z",
            "2026-02-23T19:54:44+01:00",
            "2026-02-23T19:54:44+0100",
            "2026-02-23T19:54:44+01",
            "2026-02-23T13:24:44-05:30",
            "2026-02-23T18:54:44.000Z",
        ] {
            assert_eq!(iso_datetime_micros(s), Some(AT), "{s}");
        }
        assert_eq!(
            iso_datetime_micros("2026-02-23T18:54:44.25"),
            Some(AT + 250_000)
        );
        assert_eq!(
            iso_datetime_micros("2026-02-23T18:54:44,123456789Z"),
            Some(AT + 123_456)
        );
        assert_eq!(iso_datetime_micros("1969-12-31T23:59:59"), Some(-1_000_000));
        assert_eq!(
            iso_datetime_micros("2024-02-29T00:00:00"),
            Some(1_709_164_800_000_000)
        );
    }

    #[test]
    fn what_is_no_instant_is_refused() {
        for s in [
            "",
            "2026-02-23",
            "2026-02-30T00:00:00",
            "2025-02-29T00:00:00",
            "2026-13-01T00:00:00",
            "2026-00-10T00:00:00",
            "2026-02-23T24:00:00",
            "2026-02-23T18:60:00",
            "2026-02-23T18:54:60",
            "2026-02-23T18:54:44+25:00",
            "2026-02-23T18:54:44+01:60",
            "2026-02-23T18:54:44.",
            "2026-02-23T18:54:44.1234567890",
            "2026-02-23T18:54:44 Z",
            "2026-02-23T18:54:44Q",
            "23/02/2026 18:54:44",
            "2026-02-23T18:54:4x",
            "２０２６-02-23T18:54:44",
        ] {
            assert_eq!(iso_datetime_micros(s), None, "{s:?}");
        }
    }

    proptest! {
        /// The same instant chrono reads, for every written form.
        #[test]
        fn agrees_with_chrono(
            secs in -2_208_988_800i64..253_402_300_799,
            micros in 0i64..1_000_000,
            form in 0..5usize,
            offset_min in -(23 * 60 + 59)..(23 * 60 + 59i64),
        ) {
            let utc = DateTime::from_timestamp(secs, (micros * 1000) as u32).unwrap();
            let naive = utc.naive_utc();
            let text = match form {
                0 => naive.format("%Y-%m-%dT%H:%M:%S").to_string(),
                1 => naive.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                2 => utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                _ => {
                    let tz = chrono::FixedOffset::east_opt((offset_min * 60) as i32).unwrap();
                    utc.with_timezone(&tz).format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
                }
            };
            let want = match form {
                0 => secs * 1_000_000,
                2 => secs * 1_000_000 + micros / 1000 * 1000,
                _ => secs * 1_000_000 + micros,
            };
            prop_assert_eq!(iso_datetime_micros(&text), Some(want), "{}", text);
            if form == 0 {
                let back = NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S").unwrap();
                prop_assert_eq!(back.and_utc().timestamp_micros(), want);
            }
        }

        /// Any text: an answer or `None`, never a panic; an answer only for the ISO shape.
        #[test]
        fn total_on_any_text(s in "\\PC{0,40}") {
            if iso_datetime_micros(&s).is_some() {
                let b = s.as_bytes();
                prop_assert!(b.len() >= 19 && b[4] == b'-' && b[13] == b':', "{}", s);
            }
        }
    }
}
