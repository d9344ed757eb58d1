//! Reading typed values out of text: the rules that decide which rows are quarantined.
//!
//! A CSV or NDJSON field declared `int64`, `float64`, `bool`, `date` or `datetime` arrives as
//! text; a value that is present (not empty after trimming) but does not read as its type
//! quarantines its row. Every engine reads values with these functions, so the same rows are
//! quarantined on polars and on Spark. Each trims surrounding whitespace first; an empty value is
//! missing (`None`), which the caller tells apart from a bad one with [`is_present`].

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::temporal::iso_datetime_micros;

/// `text` without surrounding whitespace, exactly as [`str::trim`] (Unicode whitespace), but
/// with no character decoding when both ends are visible ASCII, as nearly every value is: the
/// policy, the parsers and the identity actions trim each value of every row they read.
#[inline]
pub fn trim(text: &str) -> &str {
    let visible = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x80);
    let bytes = text.as_bytes();
    if visible(bytes.first()) && visible(bytes.last()) {
        text
    } else {
        text.trim()
    }
}

/// True when the text holds a value (anything but whitespace): a present value that does not
/// parse is an error, an absent one is a null.
pub fn is_present(text: &str) -> bool {
    !trim(text).is_empty()
}

/// A whole decimal number with an optional sign (`-12`, `+7`); no fraction, exponent,
/// separators or radix prefixes.
pub fn int64(text: &str) -> Option<i64> {
    trim(text).parse().ok()
}

/// A decimal floating-point number as Rust reads it: `1`, `-0.5`, `.5`, `2.`, `1e-3`, `inf`,
/// `NaN` (the last two case-insensitively).
pub fn float64(text: &str) -> Option<f64> {
    trim(text).parse().ok()
}

/// The spellings a boolean may take: `true`/`false` in three casings, `1`/`0`, `yes`/`no` in
/// three casings and `y`/`n` in two.
pub fn boolean(text: &str) -> Option<bool> {
    match trim(text) {
        "true" | "True" | "TRUE" | "1" | "yes" | "Yes" | "YES" | "y" | "Y" => Some(true),
        "false" | "False" | "FALSE" | "0" | "no" | "No" | "NO" | "n" | "N" => Some(false),
        _ => None,
    }
}

/// Days since 1970-01-01 of a date written in the chrono `format` (the whole text must match).
pub fn date_days(text: &str, format: &str) -> Option<i32> {
    let text = trim(text);
    let date = if format == ISO_DATE {
        iso_date(text).or_else(|| NaiveDate::parse_from_str(text, format).ok())?
    } else {
        NaiveDate::parse_from_str(text, format).ok()?
    };
    Some((date - epoch()).num_days() as i32)
}

/// Microseconds since 1970-01-01T00:00:00 of a datetime written in the chrono `format` (the
/// whole text must match; with an offset in the format, converted to UTC), or in ISO 8601 /
/// RFC 3339 when `format` is `None` ([`iso_datetime_micros`]).
pub fn datetime_micros(text: &str, format: Option<&str>) -> Option<i64> {
    let text = trim(text);
    let Some(format) = format else {
        return iso_datetime_micros(text);
    };
    let naive = if has_offset(format) {
        DateTime::parse_from_str(text, format).ok()?.naive_utc()
    } else {
        NaiveDateTime::parse_from_str(text, format).ok()?
    };
    Some(naive.and_utc().timestamp_micros())
}

/// The default date format.
pub const ISO_DATE: &str = "%Y-%m-%d";

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")
}

/// `YYYY-MM-DD` read directly, the common case, without chrono's general format parser (about
/// ten times faster). Anything else, `None`: the caller then asks chrono, so the result is
/// chrono's either way.
fn iso_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Whether a chrono format reads a UTC offset or a zone.
fn has_offset(format: &str) -> bool {
    ["%z", "%:z", "%::z", "%#z", "%Z", "%+", "%s"]
        .iter()
        .any(|f| format.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_read_whole_values_only() {
        assert_eq!(int64(" -12 "), Some(-12));
        assert_eq!(int64("+7"), Some(7));
        for bad in ["1.0", "1e3", "1_000", "0x10", "12a", "", "-"] {
            assert_eq!(int64(bad), None, "{bad}");
        }
        assert_eq!(float64(" 2.5"), Some(2.5));
        assert_eq!(float64(".5"), Some(0.5));
        assert_eq!(float64("1e-3"), Some(0.001));
        assert!(float64("NaN").is_some_and(f64::is_nan));
        assert_eq!(float64("1,5"), None);
    }

    #[test]
    fn booleans_take_the_listed_spellings_only() {
        assert_eq!(boolean(" yes"), Some(true));
        assert_eq!(boolean("N"), Some(false));
        assert_eq!(boolean("tRUE"), None);
        assert_eq!(boolean("2"), None);
    }

    #[test]
    fn dates_follow_the_format_and_the_calendar() {
        assert_eq!(date_days("1970-01-02", ISO_DATE), Some(1));
        assert_eq!(date_days("1969-12-31", ISO_DATE), Some(-1));
        assert_eq!(date_days("2024-02-30", ISO_DATE), None);
        assert_eq!(date_days("2024-02-29T00:00", ISO_DATE), None);
        assert_eq!(
            date_days("29/02/2024", "%d/%m/%Y"),
            date_days("2024-02-29", ISO_DATE)
        );
        assert!(date_days("2024-02-29", ISO_DATE).is_some());
    }

    #[test]
    fn datetimes_read_formats_and_offsets() {
        let at = |s: &str, f: Option<&str>| datetime_micros(s, f);
        assert_eq!(
            at("1970-01-01 00:00:01", Some("%Y-%m-%d %H:%M:%S")),
            Some(1_000_000)
        );
        assert_eq!(
            at("1970-01-01 01:00:00 +0100", Some("%Y-%m-%d %H:%M:%S %z")),
            Some(0)
        );
        assert_eq!(at("1970-01-01T00:00:00Z", None), Some(0));
        assert_eq!(at("1970-01-01 00:00", Some("%Y-%m-%d %H:%M:%S")), None);
    }

    proptest! {
        /// The fast path for `YYYY-MM-DD` gives chrono's answer, whatever the text.
        #[test]
        fn iso_dates_equal_chrono(y in 0i32..10000, m in 0u32..14, d in 0u32..33, sep in "[-/]") {
            let text = format!("{y:04}{sep}{m:02}{sep}{d:02}");
            let chrono = NaiveDate::parse_from_str(&text, ISO_DATE)
                .ok()
                .map(|v| (v - epoch()).num_days() as i32);
            prop_assert_eq!(date_days(&text, ISO_DATE), chrono);
        }

        /// The fast trim is `str::trim`, for ASCII, control, Unicode-space and other text.
        #[test]
        fn trim_is_str_trim(text in "[ \t\r\n\u{85}\u{a0}\u{2003}\u{3000}\u{1}a-z0-9é\u{7f}]{0,12}") {
            prop_assert_eq!(trim(&text), text.trim());
        }

        #[test]
        fn integers_round_trip(v in any::<i64>()) {
            prop_assert_eq!(int64(&v.to_string()), Some(v));
            prop_assert_eq!(float64(&v.to_string()), Some(v as f64));
        }
    }
}
