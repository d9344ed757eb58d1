//! CSV records split into fields by the rules of polars' CSV reader, so an engine can read a
//! file's records in chunks of its own, on its own threads, and get the values polars gives.
//!
//! The rules (polars 0.52's field splitter and line parser, with `"` as the quote):
//! - A field that starts with a quote is quoted: each quote in it flips "inside quotes", and it
//!   ends at the first separator or newline outside quotes. Its value is its bytes without the
//!   first and the last, with a doubled quote read as one quote and a single one left out
//!   ([`value`]); a quoted field that does not end with a quote is an error.
//! - Any other field runs to the next separator or newline: a quote in it is a plain byte.
//! - A `\r` that ends a field is not part of it.
//! - An empty field is missing (null); the quoted empty field `""` is the empty string.
//! - A record with fewer fields than are read has the rest missing. Once the fields read are
//!   done, the rest of the record is skipped to the first newline outside quotes, where every
//!   quote flips "inside quotes", wherever it is in a field.
//! - Every line is a record, a blank one too (one empty field); the last may end without a
//!   newline.
//!
//! Separators, newlines and quotes are found 64 bytes at a time (a bit mask per block), so a
//! field costs a few instructions however long it is.

/// The quote byte.
pub const QUOTE: u8 = b'"';

const EOL: u8 = b'\n';

/// One field of a record: its bytes `[start, end)` in the chunk (a final `\r` already left
/// out), and whether it is quoted. The default, an empty unquoted field, is missing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub start: usize,
    pub end: usize,
    pub quoted: bool,
}

/// A quoted field that does not end with its closing quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a quoted field is not closed by a quote before its separator or line end")]
pub struct NotEscaped;

/// Where a field's value is: missing, bytes `[start, end)` of the chunk as they are, or bytes
/// `[start, end)` of the caller's buffer, where [`unquote`] wrote it without its quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    Missing,
    InChunk(usize, usize),
    Written(usize, usize),
}

/// The value of `field` of `chunk`: missing when empty and not quoted; the bytes as they are
/// when not quoted, or quoted without a quote inside; else the bytes between the quotes with
/// each doubled quote read as one (a single one is left out), appended to `out`.
pub fn unquote(chunk: &[u8], field: Field, out: &mut Vec<u8>) -> Result<Value, NotEscaped> {
    let (start, end) = (field.start, field.end);
    if !field.quoted {
        return Ok(if start == end {
            Value::Missing
        } else {
            Value::InChunk(start, end)
        });
    }
    if end - start < 2 || chunk[end - 1] != QUOTE {
        return Err(NotEscaped);
    }
    let inner = &chunk[start + 1..end - 1];
    if !inner.contains(&QUOTE) {
        return Ok(Value::InChunk(start + 1, end - 1));
    }
    let from = out.len();
    let mut after_quote = false;
    for &c in inner {
        if c == QUOTE {
            // The second of two quotes is kept; a single one is dropped.
            if after_quote {
                out.push(c);
            }
            after_quote = !after_quote;
        } else {
            after_quote = false;
            out.push(c);
        }
    }
    Ok(Value::Written(from, out.len()))
}

/// [`unquote`]'s value as bytes: `None` when missing (`scratch` holds a written value).
pub fn value<'a>(
    chunk: &'a [u8],
    field: Field,
    scratch: &'a mut Vec<u8>,
) -> Result<Option<&'a [u8]>, NotEscaped> {
    scratch.clear();
    Ok(match unquote(chunk, field, scratch)? {
        Value::Missing => None,
        Value::InChunk(s, e) => Some(&chunk[s..e]),
        Value::Written(s, e) => Some(&scratch[s..e]),
    })
}

/// Where a field ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Separator,
    Newline,
    /// The chunk's end.
    Chunk,
}

/// The records of a chunk that starts at a record's start, one after another.
pub struct Records<'a> {
    bytes: &'a [u8],
    marks: Marks<'a>,
    pos: usize,
}

impl<'a> Records<'a> {
    pub fn new(bytes: &'a [u8], sep: u8) -> Records<'a> {
        Records {
            bytes,
            marks: Marks::new(bytes, sep),
            pos: 0,
        }
    }

    /// The next record's first `width` fields, in `out` (cleared first; the fields a short
    /// record lacks are missing). `false` once every record was read.
    pub fn next_into(&mut self, width: usize, out: &mut Vec<Field>) -> bool {
        let n = self.bytes.len();
        if self.pos >= n {
            return false;
        }
        out.clear();
        let mut p = self.pos;
        loop {
            let quoted = p < n && self.bytes[p] == QUOTE;
            let (end, how) = if quoted {
                self.quoted_end(p)
            } else {
                self.plain_end(p)
            };
            let mut last = end;
            if last > p && self.bytes[last - 1] == b'\r' {
                last -= 1;
            }
            if out.len() < width {
                out.push(Field {
                    start: p,
                    end: last,
                    quoted,
                });
            }
            match how {
                End::Newline => {
                    self.pos = end + 1;
                    break;
                }
                End::Chunk => {
                    self.pos = n;
                    break;
                }
                End::Separator if out.len() >= width => {
                    self.pos = self.line_end(end);
                    break;
                }
                End::Separator => p = end + 1,
            }
        }
        out.resize(width, Field::default());
        true
    }

    /// A plain field from `p`: the next separator or newline.
    fn plain_end(&mut self, mut p: usize) -> (usize, End) {
        while let Some(m) = self.marks.next(p) {
            match self.bytes[m] {
                EOL => return (m, End::Newline),
                QUOTE => p = m + 1,
                _ => return (m, End::Separator),
            }
        }
        (self.bytes.len(), End::Chunk)
    }

    /// A quoted field from `p` (its opening quote): the next separator or newline outside
    /// quotes.
    fn quoted_end(&mut self, mut p: usize) -> (usize, End) {
        let mut inside = false;
        while let Some(m) = self.marks.next(p) {
            let c = self.bytes[m];
            if c == QUOTE {
                inside = !inside;
            } else if !inside {
                return (
                    m,
                    if c == EOL {
                        End::Newline
                    } else {
                        End::Separator
                    },
                );
            }
            p = m + 1;
        }
        (self.bytes.len(), End::Chunk)
    }

    /// Just past the first newline outside quotes from `p` on (every quote flips), or the
    /// chunk's end.
    fn line_end(&mut self, mut p: usize) -> usize {
        let mut inside = false;
        while let Some(m) = self.marks.next(p) {
            match self.bytes[m] {
                QUOTE => inside = !inside,
                EOL if !inside => return m + 1,
                _ => {}
            }
            p = m + 1;
        }
        self.bytes.len()
    }
}

/// The separators, newlines and quotes of a chunk, a 64-byte block's bit mask at a time.
struct Marks<'a> {
    bytes: &'a [u8],
    sep: u8,
    /// The start of the block `mask` is of (`usize::MAX` before the first).
    block: usize,
    mask: u64,
}

impl<'a> Marks<'a> {
    fn new(bytes: &'a [u8], sep: u8) -> Marks<'a> {
        Marks {
            bytes,
            sep,
            block: usize::MAX,
            mask: 0,
        }
    }

    /// The first marked byte at or after `p`.
    #[inline]
    fn next(&mut self, mut p: usize) -> Option<usize> {
        let n = self.bytes.len();
        while p < n {
            let block = p & !63;
            if block != self.block {
                self.block = block;
                self.mask = block_mask(&self.bytes[block..n.min(block + 64)], self.sep);
            }
            let m = self.mask & (u64::MAX << (p & 63));
            if m != 0 {
                return Some(block + m.trailing_zeros() as usize);
            }
            p = block + 64;
        }
        None
    }
}

/// Bit `i` set where byte `i` of `block` (at most 64 bytes) is the separator, a newline or a
/// quote.
#[inline]
fn block_mask(block: &[u8], sep: u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if let Ok(block) = <&[u8; 64]>::try_from(block) {
        return block_mask_sse2(block, sep);
    }
    block.iter().enumerate().fold(0u64, |m, (i, &c)| {
        m | (u64::from(c == sep || c == EOL || c == QUOTE) << i)
    })
}

/// [`block_mask`] of a whole block, sixteen bytes per compare.
#[cfg(target_arch = "x86_64")]
#[inline]
fn block_mask_sse2(block: &[u8; 64], sep: u8) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of every x86_64 CPU; the loads are unaligned loads of 16 bytes
    // within the 64-byte array.
    unsafe {
        let (s, e, q) = (
            _mm_set1_epi8(sep as i8),
            _mm_set1_epi8(EOL as i8),
            _mm_set1_epi8(QUOTE as i8),
        );
        let mut mask = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
            let hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, s), _mm_cmpeq_epi8(v, e)),
                _mm_cmpeq_epi8(v, q),
            );
            mask |= u64::from(_mm_movemask_epi8(hit) as u16) << (16 * k);
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules above, one byte at a time, as the reference.
    fn reference(bytes: &[u8], sep: u8, width: usize) -> Vec<Vec<Field>> {
        let n = bytes.len();
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < n {
            let mut fields = Vec::new();
            let mut p = pos;
            loop {
                let quoted = p < n && bytes[p] == QUOTE;
                let mut inside = false;
                let mut q = p;
                while q < n {
                    let c = bytes[q];
                    if quoted && c == QUOTE {
                        inside = !inside;
                    } else if !inside && (c == sep || c == EOL) {
                        break;
                    }
                    q += 1;
                }
                let last = if q > p && bytes[q - 1] == b'\r' {
                    q - 1
                } else {
                    q
                };
                if fields.len() < width {
                    fields.push(Field {
                        start: p,
                        end: last,
                        quoted,
                    });
                }
                if q >= n {
                    pos = n;
                    break;
                }
                if bytes[q] == EOL {
                    pos = q + 1;
                    break;
                }
                if fields.len() >= width {
                    let mut inside = false;
                    let mut r = q;
                    while r < n && (inside || bytes[r] != EOL) {
                        if bytes[r] == QUOTE {
                            inside = !inside;
                        }
                        r += 1;
                    }
                    pos = (r + 1).min(n);
                    break;
                }
                p = q + 1;
            }
            fields.resize(width, Field::default());
            records.push(fields);
        }
        records
    }

    fn split(bytes: &[u8], sep: u8, width: usize) -> Vec<Vec<Field>> {
        let mut records = Records::new(bytes, sep);
        let mut out = Vec::new();
        let mut all = Vec::new();
        while records.next_into(width, &mut out) {
            all.push(out.clone());
        }
        all
    }

    fn values(bytes: &[u8], sep: u8, width: usize) -> Vec<Vec<Option<String>>> {
        split(bytes, sep, width)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|f| {
                        let mut scratch = Vec::new();
                        value(bytes, f, &mut scratch)
                            .unwrap()
                            .map(|v| String::from_utf8(v.to_vec()).unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quoted_fields_keep_separators_newlines_and_doubled_quotes() {
        let text = b"a,\"b,c\",\"say \"\"hi\"\"\"\n\"x\ny\",,\"\"\r\nlast,2";
        let got = values(text, b',', 3);
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            got,
            vec![
                vec![s("a"), s("b,c"), s("say \"hi\"")],
                vec![s("x\ny"), None, s("")],
                vec![s("last"), s("2"), None],
            ]
        );
    }

    #[test]
    fn a_quote_inside_a_plain_field_is_a_plain_byte() {
        let got = values(b"ab\"c,d\n", b',', 2);
        assert_eq!(
            got,
            vec![vec![Some("ab\"c".to_string()), Some("d".to_string())]]
        );
    }

    #[test]
    fn fields_past_the_width_are_skipped_to_the_line_end_outside_quotes() {
        let text = b"a,b,\"x\ny\",z\nc,d\n";
        let got = values(text, b',', 2);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], vec![Some("c".to_string()), Some("d".to_string())]);
    }

    #[test]
    fn blank_lines_are_records_of_missing_fields() {
        let got = values(b"a,b\n\n\r\nc,d", b',', 2);
        assert_eq!(got.len(), 4);
        assert_eq!(got[1], vec![None, None]);
        assert_eq!(got[2], vec![None, None]);
    }

    #[test]
    fn a_quoted_field_without_its_closing_quote_is_an_error() {
        let text = b"\"ab\"c,d\n";
        let f = split(text, b',', 2)[0][0];
        assert_eq!(value(text, f, &mut Vec::new()), Err(NotEscaped));
        let text = b"\"\n";
        let f = split(text, b',', 1)[0][0];
        assert_eq!(value(text, f, &mut Vec::new()), Err(NotEscaped));
    }

    #[test]
    fn values_written_unquoted_follow_each_other_in_the_buffer() {
        let text = b"\"a\"\"b\",\"c\"\"\"\"d\",plain,\"as is\"";
        let fields = split(text, b',', 4).remove(0);
        let mut out = b"kept".to_vec();
        let got: Vec<Value> = fields
            .iter()
            .map(|f| unquote(text, *f, &mut out).unwrap())
            .collect();
        assert_eq!(out, b"kepta\"bc\"\"d");
        assert_eq!(
            got,
            vec![
                Value::Written(4, 7),
                Value::Written(7, 11),
                Value::InChunk(16, 21),
                Value::InChunk(23, 28),
            ]
        );
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 ]{0,8}",
            "[a-z;,\"\r\n]{0,70}",
            "[a-z,;\r\n\"]{0,90}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ]
    }

    proptest! {
        /// The 64-byte blocks find the fields the reference finds, byte for byte, for any
        /// bytes (stray quotes, `\r`, ragged records), separators and widths.
        #[test]
        fn records_split_as_the_reference_splits_them(
            rows in prop::collection::vec(prop::collection::vec(field(), 0..6), 0..40),
            sep in prop::sample::select(vec![b',', b';', b'\t']),
            width in 1usize..6,
            crlf in any::<bool>(),
            trailing in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = rows
                .iter()
                .map(|r| r.join(&(sep as char).to_string()))
                .collect::<Vec<_>>()
                .join(eol);
            if trailing {
                text.push_str(eol);
            }
            let bytes = text.as_bytes();
            prop_assert_eq!(split(bytes, sep, width), reference(bytes, sep, width));
        }

        /// Quoted values come back as written, whatever they hold.
        #[test]
        fn quoted_values_round_trip(values in prop::collection::vec("[a-z,\"\r\n ]{0,80}", 1..8)) {
            let text: String = values
                .iter()
                .map(|v| format!("\"{}\"", v.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(",");
            let got = super::tests::values(text.as_bytes(), b',', values.len());
            let want: Vec<Option<String>> = values.iter().map(|v| Some(v.clone())).collect();
            prop_assert_eq!(got, vec![want]);
        }
    }
}
