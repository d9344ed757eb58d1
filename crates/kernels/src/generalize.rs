//! Generalizers: a value made coarser so it tells less about a person.
//!
//! A prefix of a text (a postcode's district), the lower bound of a number's bucket, the first
//! day of a date's month. Plain functions over one value, total except for the bucket widths
//! the pipeline validates, the same on every engine.

/// Appends the first `n` characters (Unicode scalar values) of `value`, or all of it if shorter.
pub fn prefix_into(value: &str, n: usize, out: &mut String) {
    let end = value.char_indices().nth(n).map_or(value.len(), |(i, _)| i);
    out.push_str(&value[..end]);
}

/// The lower bound of `x`'s bucket: the largest multiple of `width` not above `x`.
///
/// Floors toward negative infinity, so -1 with width 10 is in bucket -10, not 0. Where the exact
/// multiple lies below `i64::MIN` the result saturates to `i64::MIN`.
///
/// # Panics
/// If `width` is not positive; bucket widths are checked when the pipeline is validated.
pub fn bucket_i64(x: i64, width: i64) -> i64 {
    assert!(width > 0, "bucket width must be positive, got {width}");
    // `div_euclid` floors for a positive divisor and cannot overflow for one. The product is at
    // most `x`, so it can only overflow downward.
    x.div_euclid(width).saturating_mul(width)
}

/// The lower bound of `x`'s bucket: the largest multiple of `width` not above `x`.
///
/// Floors toward negative infinity and guarantees `result <= x` despite rounding in the
/// division. NaN and infinities are returned unchanged, and so is any `x` so large that
/// `x / width` overflows (such an `x` is already coarser than `width`).
///
/// # Panics
/// If `width` is not positive and finite; bucket widths are checked when the pipeline is
/// validated.
pub fn bucket_f64(x: f64, width: f64) -> f64 {
    assert!(
        width > 0.0 && width.is_finite(),
        "bucket width must be positive and finite, got {width}"
    );
    if !x.is_finite() {
        return x;
    }
    let lower = (x / width).floor() * width;
    if !lower.is_finite() {
        return x;
    }
    // x / width can round up to the next whole number (0.7 / 0.1 is fine, but not every case is),
    // which would put the bound above x.
    if lower > x {
        lower - width
    } else {
        lower
    }
}

/// Days since the epoch of the first day of the month holding `days` (days since 1970-01-01,
/// as Arrow and Parquet store dates). A day outside chrono's range is returned unchanged.
pub fn month_start_days(days: i32) -> i32 {
    use chrono::Datelike;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let Some(d) = epoch.checked_add_signed(chrono::Duration::days(days as i64)) else {
        return days;
    };
    let first = d.with_day(1).unwrap_or(d);
    (first - epoch).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_examples() {
        let prefix = |v: &str, n| {
            let mut out = String::new();
            prefix_into(v, n, &mut out);
            out
        };
        assert_eq!(prefix("SW1A 1AA", 4), "SW1A");
        assert_eq!(prefix("ab", 5), "ab");
        assert_eq!(prefix("ab", 0), "");
        assert_eq!(prefix("Öl und Ähre", 2), "Öl");
    }

    #[test]
    fn bucket_examples_and_extremes() {
        assert_eq!(bucket_i64(37, 10), 30);
        assert_eq!(bucket_i64(30, 10), 30);
        assert_eq!(bucket_i64(-1, 10), -10);
        assert_eq!(bucket_i64(-10, 10), -10);
        assert_eq!(bucket_i64(i64::MAX, 1), i64::MAX);
        assert_eq!(bucket_i64(i64::MAX, 10), i64::MAX - 7);
        assert_eq!(bucket_i64(i64::MIN, 2), i64::MIN);
        // The exact multiple (-9223372036854775809) is below i64::MIN: saturate.
        assert_eq!(bucket_i64(i64::MIN, 3), i64::MIN);
        assert_eq!(bucket_i64(i64::MIN + 5, i64::MAX), -i64::MAX);
        assert_eq!(bucket_i64(i64::MIN, i64::MAX), i64::MIN);
        assert_eq!(bucket_i64(5, i64::MAX), 0);

        assert_eq!(bucket_f64(37.5, 10.0), 30.0);
        assert_eq!(bucket_f64(-0.5, 10.0), -10.0);
        assert_eq!(bucket_f64(0.7, 0.1), 0.6000000000000001);
        assert!(bucket_f64(f64::NAN, 1.0).is_nan());
        assert_eq!(bucket_f64(f64::INFINITY, 1.0), f64::INFINITY);
        assert_eq!(bucket_f64(f64::MAX, 1e-300), f64::MAX);
        assert_eq!(bucket_f64(-f64::MAX, 1e-300), -f64::MAX);
    }

    #[test]
    #[should_panic(expected = "bucket width must be positive")]
    fn bucket_rejects_zero_width() {
        bucket_i64(1, 0);
    }

    #[test]
    #[should_panic(expected = "bucket width must be positive")]
    fn bucket_f64_rejects_nan_width() {
        bucket_f64(1.0, f64::NAN);
    }

    #[test]
    fn month_start_is_first_of_month() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let d = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let got = month_start_days((d - epoch).num_days() as i32);
        assert_eq!(
            epoch + chrono::Duration::days(got as i64),
            chrono::NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()
        );
    }

    proptest! {
        #[test]
        fn prefix_is_a_prefix(value in ".*", n in 0usize..12) {
            let mut out = String::new();
            prefix_into(&value, n, &mut out);
            prop_assert!(value.starts_with(&out));
            prop_assert_eq!(out.chars().count(), n.min(value.chars().count()));
        }

        #[test]
        fn bucket_i64_contains_x(x in -1_000_000_000_000i64..1_000_000_000_000,
                                 width in 1i64..1_000_000) {
            let lower = bucket_i64(x, width);
            prop_assert!(lower <= x && x < lower + width);
            prop_assert_eq!(lower % width, 0);
        }

        #[test]
        fn bucket_f64_contains_x(x in -1e9f64..1e9, width in 1e-3f64..1e6) {
            let lower = bucket_f64(x, width);
            prop_assert!(lower <= x, "{} > {}", lower, x);
            // Allow for rounding at the scale of x and of width.
            let slack = width * 1e-9 + x.abs() * 4.0 * f64::EPSILON;
            prop_assert!(x - lower < width + slack, "{} >= {} + {}", x, lower, width);
        }
    }
}
