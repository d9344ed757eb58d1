//! The kernels over whole Arrow string arrays (arrow-rs), for engines that hand over Arrow
//! batches: the Python wheel under Spark's `mapInArrow`, or any other.
//!
//! Each function maps the `&str` kernel of its module over the values of an array, writing
//! through one reused buffer, so its output equals the `&str` path value by value. Nulls stay
//! null in string outputs. Functions are generic over the offset width, so `StringArray` and
//! `LargeStringArray` both work. Parallelism is the caller's: an engine already runs one batch
//! per core.

use arrow_array::builder::GenericStringBuilder;
use arrow_array::{Array, BooleanArray, GenericStringArray, Int32Array, OffsetSizeTrait};

use crate::gate::{self, GateCounts, IdentifierSet};
use crate::pii::redact::TextRewriter;
use crate::pii::Scanner;
use crate::split::Splitter;
use crate::token::{self, Tokenizer};
use crate::{generalize, mask as masks, policy};

/// The loop every engine's column adapter runs: `f` of each non-null value (`f` appends its
/// result to the buffer it is given, which starts empty) handed to `emit`, through one reused
/// buffer; a null is handed on as `None`.
pub fn map_values<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
    mut f: impl FnMut(&str, &mut String),
    mut emit: impl FnMut(Option<&str>),
) {
    let mut buf = String::new();
    for v in values {
        match v {
            Some(v) => {
                buf.clear();
                f(v, &mut buf);
                emit(Some(&buf));
            }
            None => emit(None),
        }
    }
}

/// Maps every non-null value through a string kernel ([`map_values`]); nulls stay null.
pub fn map_strings<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    f: impl FnMut(&str, &mut String),
) -> GenericStringArray<O> {
    let mut builder =
        GenericStringBuilder::<O>::with_capacity(array.len(), array.value_data().len());
    map_values(array.iter(), f, |v| builder.append_option(v));
    builder.finish()
}

/// The keyed token of every value ([`Tokenizer::token_into`]).
pub fn tokenize<O: OffsetSizeTrait>(
    tokenizer: &Tokenizer,
    array: &GenericStringArray<O>,
) -> GenericStringArray<O> {
    map_strings(array, |v, out| tokenizer.token_into(v, out))
}

/// The unkeyed SHA-256 of every value, hex ([`token::sha256_hex_into`]).
pub fn sha256_hex<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> GenericStringArray<O> {
    map_strings(array, token::sha256_hex_into)
}

/// Every value masked but its last `keep_last` characters ([`masks::mask_into`]).
pub fn mask<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    keep_last: usize,
) -> GenericStringArray<O> {
    map_strings(array, |v, out| masks::mask_into(v, keep_last, out))
}

/// The first `n` characters of every value ([`generalize::prefix_into`]).
pub fn prefix<O: OffsetSizeTrait>(
    array: &GenericStringArray<O>,
    n: usize,
) -> GenericStringArray<O> {
    map_strings(array, |v, out| generalize::prefix_into(v, n, out))
}

/// The value of row `i` of a context column; a column shorter than the text counts as missing.
fn context_value<O: OffsetSizeTrait>(column: &GenericStringArray<O>, i: usize) -> Option<&str> {
    (i < column.len() && column.is_valid(i)).then(|| column.value(i))
}

/// Every text with its PII replaced ([`TextRewriter::rewrite`]), each scanned with its row's
/// values of the `context` columns (the row's own identifiers). The rewriter keeps the counts.
pub fn redact<O: OffsetSizeTrait>(
    rewriter: &mut TextRewriter<'_>,
    text: &GenericStringArray<O>,
    context: &[&GenericStringArray<O>],
) -> GenericStringArray<O> {
    let mut builder = GenericStringBuilder::<O>::with_capacity(text.len(), text.value_data().len());
    for (i, v) in text.iter().enumerate() {
        let row = context.iter().map(|c| context_value(c, i));
        builder.append_option(rewriter.rewrite_row(v, row));
    }
    builder.finish()
}

/// For every text, whether a hit drops its row ([`TextRewriter::must_drop`]); null for a
/// null text.
pub fn drop_rows<O: OffsetSizeTrait>(
    rewriter: &mut TextRewriter<'_>,
    text: &GenericStringArray<O>,
    context: &[&GenericStringArray<O>],
) -> BooleanArray {
    text.iter()
        .enumerate()
        .map(|(i, v)| rewriter.drop_row(v, context.iter().map(|c| context_value(c, i))))
        .collect()
}

/// The split code of every subject ([`Splitter::split_of`]); a null subject gets the split of
/// the empty id, so the output has no nulls.
pub fn split<O: OffsetSizeTrait>(
    splitter: &Splitter,
    subjects: &GenericStringArray<O>,
) -> Int32Array {
    subjects
        .iter()
        .map(|v| Some(splitter.split_of(v)))
        .collect()
}

/// Whether each purposes list includes `purpose` ([`policy::purposes_include`]); a null list
/// includes nothing, so the output has no nulls.
pub fn purposes_include<O: OffsetSizeTrait>(
    lists: &GenericStringArray<O>,
    sep: &str,
    purpose: &str,
) -> BooleanArray {
    lists
        .iter()
        .map(|v| Some(v.is_some_and(|v| policy::purposes_include(v, sep, purpose))))
        .collect()
}

/// Whether each value is one of `allowed` ([`policy::one_of`]); a null is none of them.
pub fn one_of<O: OffsetSizeTrait>(
    values: &GenericStringArray<O>,
    allowed: &[String],
) -> BooleanArray {
    values
        .iter()
        .map(|v| Some(v.is_some_and(|v| policy::one_of(v, allowed))))
        .collect()
}

/// The leak gate's counts for one array of output values ([`gate::check_values`]).
pub fn gate_check<O: OffsetSizeTrait>(
    scanner: &Scanner,
    ids: &IdentifierSet,
    slots: usize,
    values: &GenericStringArray<O>,
) -> GateCounts {
    let values: Vec<Option<&str>> = values.iter().collect();
    gate::check_values(scanner, ids, slots, &values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;
    use crate::pii::{Kind, RowContext, ScannerConfig, Span, TextAction, TextPolicy};
    use crate::token::TokenEncoding;
    use arrow_array::{LargeStringArray, StringArray};

    fn sample() -> StringArray {
        StringArray::from(vec![
            Some("ava.kumar@example.com"),
            None,
            Some(""),
            Some("Zoë Müller"),
            Some("call +1 415 555 0132 or mail a@b.io"),
            None,
            Some("日本語テキスト"),
        ])
    }

    /// `got` holds `f` of every non-null value of `input`, and nulls where it has them.
    fn assert_maps(input: &StringArray, got: &StringArray, f: impl Fn(&str) -> String) {
        assert_eq!(got.len(), input.len());
        for (i, (a, b)) in input.iter().zip(got.iter()).enumerate() {
            assert_eq!(b.map(str::to_string), a.map(&f), "row {i}");
        }
        assert_eq!(got.null_count(), input.null_count());
    }

    fn key() -> Key {
        Key::parse(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn tokens_hashes_masks_and_prefixes_equal_the_str_path() {
        let input = sample();
        for encoding in [TokenEncoding::Hex, TokenEncoding::Base64Url] {
            let t = Tokenizer::new(&key(), 128, encoding).unwrap();
            assert_maps(&input, &tokenize(&t, &input), |v| t.token(v));
        }
        assert_maps(&input, &sha256_hex(&input), |v| {
            let mut out = String::new();
            token::sha256_hex_into(v, &mut out);
            out
        });
        assert_maps(&input, &mask(&input, 4), |v| {
            let mut out = String::new();
            masks::mask_into(v, 4, &mut out);
            out
        });
        assert_maps(&input, &prefix(&input, 3), |v| {
            let mut out = String::new();
            generalize::prefix_into(v, 3, &mut out);
            out
        });
        // Large offsets give the same values.
        let large = LargeStringArray::from_iter(input.iter());
        let t = Tokenizer::new(&key(), 128, TokenEncoding::Hex).unwrap();
        let a = tokenize(&t, &input);
        let b = tokenize(&t, &large);
        assert!(a.iter().eq(b.iter()));
    }

    #[test]
    fn redaction_equals_scan_and_apply_and_uses_the_row_context() {
        let scanner = Scanner::new(&ScannerConfig::default()).unwrap();
        let mut policy = TextPolicy::new(TextAction::Redact, &[]);
        policy.set_action(Kind::Email, TextAction::Tokenize);
        policy.set_action(Kind::Phone, TextAction::Mask { keep_last: 4 });
        let t = Tokenizer::new(&key(), 64, TokenEncoding::Hex).unwrap();
        let token = move |v: &str, out: &mut String| t.token_into(v, out);
        let text = StringArray::from(vec![
            Some("Hi, Ava Kumar here, mail ava.kumar@example.com"),
            None,
            Some("Hi, Ava Kumar here"),
            Some("call +1 415 555 0132"),
        ]);
        let names = StringArray::from(vec![Some("Ava Kumar"), Some("Bo"), None]);
        let mut rw = TextRewriter::new(&scanner, &policy, Some(&token));
        let got = redact(&mut rw, &text, &[&names]);
        for (i, (v, g)) in text.iter().zip(got.iter()).enumerate() {
            let Some(v) = v else {
                assert!(g.is_none());
                continue;
            };
            let mut ctx = RowContext::new();
            if let Some(name) = context_value(&names, i) {
                ctx.add(name);
            }
            let mut spans: Vec<Span> = Vec::new();
            scanner.scan(v, &ctx, &mut spans);
            let mut want = String::new();
            crate::pii::redact::apply_into(v, &spans, &policy, Some(&token), &mut want);
            if spans.is_empty() {
                want = v.to_string();
            }
            assert_eq!(g, Some(want.as_str()), "row {i}");
        }
        assert!(got.value(0).starts_with("Hi, [NAME] here, mail [EMAIL:"));
        // Row 2 has no name in its context: the name stays.
        assert_eq!(got.value(2), "Hi, Ava Kumar here");
        assert_eq!(got.value(3), "call +* *** *** 0132");
        assert_eq!(rw.counts().0, 3);

        policy.set_action(Kind::Phone, TextAction::DropRow);
        let mut rw = TextRewriter::new(&scanner, &policy, None);
        let dropped = drop_rows(&mut rw, &text, &[&names]);
        let want: Vec<Option<bool>> = vec![Some(false), None, Some(false), Some(true)];
        assert_eq!(dropped.iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn splits_predicates_and_the_gate_equal_the_str_path() {
        let subjects = StringArray::from(vec![Some("S1"), Some(" S1 "), None, Some("S2")]);
        let splitter = Splitter::new(&key(), [0.5, 0.25, 0.25]);
        let codes = split(&splitter, &subjects);
        assert_eq!(codes.null_count(), 0);
        for (s, c) in subjects.iter().zip(codes.iter()) {
            assert_eq!(c, Some(splitter.split_of(s)));
        }
        assert_eq!(codes.value(0), codes.value(1));

        let lists = StringArray::from(vec![Some("training; ads"), None, Some("pretraining")]);
        let got: Vec<Option<bool>> = purposes_include(&lists, ";", "training").iter().collect();
        assert_eq!(got, [Some(true), Some(false), Some(false)]);
        let allowed = ["granted".to_string()];
        let status = StringArray::from(vec![Some(" Granted"), None, Some("denied")]);
        let got: Vec<Option<bool>> = one_of(&status, &allowed).iter().collect();
        assert_eq!(got, [Some(true), Some(false), Some(false)]);

        let scanner = Scanner::new(&ScannerConfig::default()).unwrap();
        let mut ids = IdentifierSet::new();
        ids.insert("ava.kumar@example.com");
        let input = sample();
        let values: Vec<Option<&str>> = input.iter().collect();
        let counts = gate_check(&scanner, &ids, 11, &input);
        assert_eq!(counts, gate::check_values(&scanner, &ids, 11, &values));
        assert_eq!(counts.scanned, 5);
        assert_eq!(counts.identifier_values, 1);
    }
}
