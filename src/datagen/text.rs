//! Small, allocation-free formatting helpers for the hot loop.
//!
//! Ten million rows hold well over a hundred million numbers; `write!` costs several times more
//! than pushing digits, so the generator pushes them itself.

use chrono::{Datelike, NaiveDate};

/// Days from 0001-01-01 (day 1 in chrono's count) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Appends `n` in decimal.
pub(crate) fn push_uint(buf: &mut String, n: u64) {
    push_padded(buf, n, 1);
}

/// Appends `n` in decimal, left-padded with zeros to at least `width` (at most 20) digits.
pub(crate) fn push_padded(buf: &mut String, mut n: u64, width: usize) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263\
        646566676869707172737475767778798081828384858687888990919293949596979899";
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[n as usize * 2..n as usize * 2 + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    // `digits` is pre-filled with zeros, so widening is just moving the start back.
    let start = i.min(digits.len() - width.min(digits.len()));
    buf.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// The calendar date `days` after 1970-01-01.
pub(crate) fn date_from_unix_days(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .expect("generated dates are in range")
}

/// Days from 1970-01-01 to `date`.
pub(crate) fn unix_days(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// Appends the date `days` after 1970-01-01 as `YYYY-MM-DD`.
pub(crate) fn push_date(buf: &mut String, days: i32) {
    let date = date_from_unix_days(days);
    push_padded(buf, date.year() as u64, 4);
    buf.push('-');
    push_padded(buf, u64::from(date.month()), 2);
    buf.push('-');
    push_padded(buf, u64::from(date.day()), 2);
}

/// Appends a Unix time in seconds as `YYYY-MM-DD<sep>HH:MM:SS`.
pub(crate) fn push_datetime(buf: &mut String, secs: i64, sep: char) {
    push_date(buf, secs.div_euclid(86_400) as i32);
    buf.push(sep);
    let tod = secs.rem_euclid(86_400) as u64;
    push_padded(buf, tod / 3600, 2);
    buf.push(':');
    push_padded(buf, tod / 60 % 60, 2);
    buf.push(':');
    push_padded(buf, tod % 60, 2);
}

/// Appends `cents / 100` with exactly two decimals, e.g. `1234` → `12.34`.
pub(crate) fn push_cents(buf: &mut String, cents: u64) {
    push_uint(buf, cents / 100);
    buf.push('.');
    push_padded(buf, cents % 100, 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn numbers() {
        assert_eq!(render(|b| push_uint(b, 0)), "0");
        assert_eq!(render(|b| push_uint(b, u64::MAX)), u64::MAX.to_string());
        assert_eq!(render(|b| push_padded(b, 42, 5)), "00042");
        assert_eq!(render(|b| push_padded(b, 123_456, 3)), "123456");
        assert_eq!(render(|b| push_cents(b, 5)), "0.05");
        assert_eq!(render(|b| push_cents(b, 129_900)), "1299.00");
    }

    #[test]
    fn dates_match_chrono() {
        let d = NaiveDate::from_ymd_opt(1940, 2, 29).unwrap();
        assert_eq!(render(|b| push_date(b, unix_days(d))), "1940-02-29");
        let t = d.and_hms_opt(23, 5, 9).unwrap().and_utc().timestamp();
        assert_eq!(render(|b| push_datetime(b, t, 'T')), "1940-02-29T23:05:09");
        assert_eq!(render(|b| push_date(b, 0)), "1970-01-01");
    }
}
