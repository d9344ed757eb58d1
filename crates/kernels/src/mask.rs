//! Masks: a value with all but its last characters starred.
//!
//! Like every kernel here, it takes one value and appends its result to a caller-owned
//! `String`, so an engine writes a whole column into one reused buffer.

/// Appends `value` with every character but the last `keep_last` replaced by `*`.
///
/// Characters are Unicode scalar values, not bytes, so the output has as many characters as the
/// input and never splits a multi-byte character. (A grapheme made of several scalars, such as
/// a flag emoji, counts as several.)
pub fn mask_into(value: &str, keep_last: usize, out: &mut String) {
    // Byte offset where the kept tail starts: walk back `keep_last` characters from the end.
    let tail_start = match keep_last {
        0 => value.len(),
        n => value
            .char_indices()
            .rev()
            .nth(n - 1)
            .map_or(0, |(offset, _)| offset),
    };
    let masked = value[..tail_start].chars().count();
    out.reserve(masked + value.len() - tail_start);
    out.extend(std::iter::repeat_n('*', masked));
    out.push_str(&value[tail_start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mask_examples() {
        let mask = |v: &str, k| {
            let mut out = String::new();
            mask_into(v, k, &mut out);
            out
        };
        assert_eq!(mask("4111111111111111", 4), "************1111");
        assert_eq!(mask("abc", 0), "***");
        assert_eq!(mask("abc", 3), "abc");
        assert_eq!(mask("abc", 10), "abc");
        assert_eq!(mask("", 2), "");
        assert_eq!(mask("Zoë Müller", 3), "*******ler");
        assert_eq!(mask("日本語テキスト", 2), "*****スト");
    }

    proptest! {
        #[test]
        fn mask_keeps_length_and_tail(value in ".*", keep_last in 0usize..12) {
            let mut out = String::new();
            mask_into(&value, keep_last, &mut out);
            let input: Vec<char> = value.chars().collect();
            let output: Vec<char> = out.chars().collect();
            prop_assert_eq!(output.len(), input.len());
            let masked = input.len().saturating_sub(keep_last);
            prop_assert!(output[..masked].iter().all(|&c| c == '*'));
            prop_assert_eq!(&output[masked..], &input[masked..]);
        }
    }
}
