//! One pass over each input file before the engine reads it: content hash, byte count, record
//! count, and the records that cannot be parsed at all (wrong field count, invalid JSON).
//!
//! The engine is told to skip those records by index; they are quarantined with their line number.
//! Hashing runs on a second thread so the pass costs one read of the file.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

/// A record that could not be split into the expected fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// 0-based data record index (header excluded), as the engine counts rows.
    pub record: u64,
    /// 1-based physical line the record starts on.
    pub line: u64,
    /// What is wrong, without content.
    pub error: String,
}

/// What the pre-scan learned about one file.
#[derive(Debug, Clone, Default)]
pub struct PreScan {
    pub bytes: u64,
    pub sha256: String,
    /// Data records (for CSV, excluding the header; for NDJSON, non-blank lines).
    pub records: u64,
    pub bad: Vec<BadRecord>,
    /// (first record index, extra lines before it): records after a quoted newline start on a
    /// later line than their index suggests. Sorted by record index.
    line_shifts: Vec<(u64, u64)>,
    /// Line number of the first data record (2 with a CSV header, 1 otherwise).
    first_line: u64,
}

impl PreScan {
    /// A scan of a file without lines (Parquet): line numbers are record numbers + 1.
    pub fn without_lines(bytes: u64, sha256: String, records: u64) -> PreScan {
        PreScan {
            bytes,
            sha256,
            records,
            first_line: 1,
            ..Default::default()
        }
    }

    /// 1-based line that data record `record` starts on.
    pub fn line_of(&self, record: u64) -> u64 {
        let idx = self.line_shifts.partition_point(|(r, _)| *r <= record);
        let extra = if idx == 0 {
            0
        } else {
            self.line_shifts[idx - 1].1
        };
        self.first_line + record + extra
    }
}

const CHUNK: usize = 4 << 20;

/// Reads the file once, hashing on a helper thread while `scan` looks at the bytes.
fn read_hashing(path: &Path, mut scan: impl FnMut(&[u8])) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        for chunk in rx {
            h.update(&chunk);
        }
        hex::encode(h.finalize())
    });
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        total += filled as u64;
        scan(&buf);
        if tx.send(buf).is_err() {
            break;
        }
    }
    drop(tx);
    let digest = hasher
        .join()
        .map_err(|_| std::io::Error::other("hashing thread failed"))?;
    Ok((total, digest))
}

/// Hash and size only (Parquet inputs, revocation lists).
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    read_hashing(path, |_| {})
}

/// Splits CSV bytes into records (RFC 4180 quoting) and counts fields per record.
struct CsvScanner {
    sep: u8,
    has_header: bool,
    expected: Option<u64>,
    in_quotes: bool,
    fields: u64,
    record_empty: bool,
    line: u64,
    record_start_line: u64,
    records: u64,
    header_done: bool,
    bad: Vec<BadRecord>,
    shifts: Vec<(u64, u64)>,
}

impl CsvScanner {
    fn new(sep: u8, has_header: bool) -> Self {
        CsvScanner {
            sep,
            has_header,
            expected: None,
            in_quotes: false,
            fields: 1,
            record_empty: true,
            line: 1,
            record_start_line: 1,
            records: 0,
            header_done: !has_header,
            bad: Vec::new(),
            shifts: Vec::new(),
        }
    }

    /// Walks the bytes jumping from one quote or newline to the next (memchr), counting
    /// separators in the runs between them, which the compiler vectorizes.
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let next = memchr::memchr2(b'"', b'\n', rest);
            if self.in_quotes {
                let Some(k) = next else { break };
                if rest[k] == b'"' {
                    self.in_quotes = false;
                } else {
                    self.line += 1;
                }
                i += k + 1;
                continue;
            }
            let run = &rest[..next.unwrap_or(rest.len())];
            if !run.is_empty() {
                let sep = self.sep;
                self.fields += run.iter().filter(|&&b| b == sep).count() as u64;
                if self.record_empty && run.iter().any(|&b| b != b'\r') {
                    self.record_empty = false;
                }
            }
            let Some(k) = next else { break };
            if rest[k] == b'"' {
                self.in_quotes = true;
                self.record_empty = false;
            } else {
                self.end_record();
                self.line += 1;
                self.record_start_line = self.line;
            }
            i += k + 1;
        }
    }

    fn end_record(&mut self) {
        if self.record_empty {
            // Blank lines are skipped by CSV readers; they are not records.
            self.fields = 1;
            return;
        }
        if !self.header_done {
            self.header_done = true;
            self.expected = Some(self.fields);
        } else {
            let record = self.records;
            let first_line = if self.has_header { 2 } else { 1 };
            let expected_line = first_line + record + self.shifts.last().map_or(0, |s| s.1);
            if self.record_start_line != expected_line {
                self.shifts
                    .push((record, self.record_start_line - first_line - record));
            }
            match self.expected {
                Some(n) if n != self.fields => self.bad.push(BadRecord {
                    record,
                    line: self.record_start_line,
                    error: format!("expected {n} fields, found {}", self.fields),
                }),
                None => self.expected = Some(self.fields),
                _ => {}
            }
            self.records += 1;
        }
        self.fields = 1;
        self.record_empty = true;
    }

    fn finish(mut self) -> (u64, Vec<BadRecord>, Vec<(u64, u64)>) {
        if self.in_quotes {
            // An unterminated quote swallows the rest of the file into one record.
            let record = self.records;
            self.bad.push(BadRecord {
                record,
                line: self.record_start_line,
                error: "unterminated quoted field".to_string(),
            });
            self.in_quotes = false;
            // Already reported: keep the field-count check from reporting it again.
            if let Some(n) = self.expected {
                self.fields = n;
            }
        }
        self.end_record();
        (self.records, self.bad, self.shifts)
    }
}

/// Pre-scan of a CSV file.
pub fn prescan_csv(path: &Path, sep: u8, has_header: bool) -> std::io::Result<PreScan> {
    let mut scanner = CsvScanner::new(sep, has_header);
    let (bytes, sha256) = read_hashing(path, |chunk| scanner.feed(chunk))?;
    let (records, bad, line_shifts) = scanner.finish();
    Ok(PreScan {
        bytes,
        sha256,
        records,
        bad,
        line_shifts,
        first_line: if has_header { 2 } else { 1 },
    })
}

/// Pre-scan of an NDJSON file: every non-blank line must be one JSON object.
pub fn prescan_ndjson(path: &Path) -> std::io::Result<PreScan> {
    let mut pending: Vec<u8> = Vec::new();
    let mut line = 0u64;
    let mut records = 0u64;
    let mut bad = Vec::new();
    let mut shifts: Vec<(u64, u64)> = Vec::new();
    let check = |text: &[u8],
                 line: u64,
                 records: &mut u64,
                 bad: &mut Vec<BadRecord>,
                 shifts: &mut Vec<(u64, u64)>| {
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        let record = *records;
        let expected = 1 + record + shifts.last().map_or(0, |s| s.1);
        if line != expected {
            shifts.push((record, line - 1 - record));
        }
        let ok = trimmed.first() == Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok();
        if !ok {
            bad.push(BadRecord {
                record,
                line,
                error: "not a valid JSON object".to_string(),
            });
        }
        *records += 1;
    };
    let (bytes, sha256) = read_hashing(path, |chunk| {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            line += 1;
            if pending.is_empty() {
                check(&rest[..pos], line, &mut records, &mut bad, &mut shifts);
            } else {
                pending.extend_from_slice(&rest[..pos]);
                let full = std::mem::take(&mut pending);
                check(&full, line, &mut records, &mut bad, &mut shifts);
            }
            rest = &rest[pos + 1..];
        }
        pending.extend_from_slice(rest);
    })?;
    if !pending.is_empty() {
        line += 1;
        check(&pending, line, &mut records, &mut bad, &mut shifts);
    }
    Ok(PreScan {
        bytes,
        sha256,
        records,
        bad,
        line_shifts: shifts,
        first_line: 1,
    })
}

/// Header field names of a CSV file (first non-blank record).
pub fn csv_header(path: &Path, sep: u8) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    // The header ends at the first newline outside quotes.
    let mut in_quotes = false;
    'outer: loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'"' {
                in_quotes = !in_quotes;
            }
            if b == b'\n' && !in_quotes {
                if buf.iter().all(|c: &u8| c.is_ascii_whitespace()) {
                    buf.clear();
                    continue;
                }
                break 'outer;
            }
            buf.push(b);
        }
        if buf.len() > 16 << 20 {
            return Err(std::io::Error::other("header line longer than 16 MiB"));
        }
    }
    let text = String::from_utf8(buf).map_err(|_| std::io::Error::other("header is not UTF-8"))?;
    let text = text.trim_end_matches('\r').trim_start_matches('\u{feff}');
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if !quoted && c as u32 == sep as u32 => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn counts_records_and_finds_wrong_field_counts() {
        let f = write("a,b,c\n1,2,3\n4,5\n6,7,8,9\n\"x,y\",2,3\n");
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.records, 4);
        assert_eq!(s.bad.len(), 2);
        assert_eq!((s.bad[0].record, s.bad[0].line), (1, 3));
        assert_eq!((s.bad[1].record, s.bad[1].line), (2, 4));
    }

    #[test]
    fn quoted_newlines_shift_line_numbers() {
        let f = write("a,b\n1,\"two\nlines\"\n3,4\n5,6,7\n");
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.records, 3);
        assert_eq!(s.line_of(0), 2);
        assert_eq!(s.line_of(1), 4);
        assert_eq!(s.bad[0].line, 5);
        assert_eq!(s.line_of(2), 5);
    }

    /// Regression: a record with an open quote at the end of the file was reported twice
    /// (unterminated quote and wrong field count), which broke the row accounting.
    #[test]
    fn unterminated_quote_is_one_bad_record() {
        let f = write("a,b,c\nS1,\"x,y\n");
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.records, 1);
        assert_eq!(s.bad.len(), 1);
        assert_eq!(s.bad[0].error, "unterminated quoted field");
    }

    #[test]
    fn hash_matches_sha256_of_content() {
        let f = write("a\n1\n");
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.sha256, hex::encode(Sha256::digest(b"a\n1\n")));
        assert_eq!(s.bytes, 4);
    }

    #[test]
    fn ndjson_flags_invalid_lines() {
        let f = write("{\"a\":1}\n\n{\"a\":\n[1]\n{\"a\":2}");
        let s = prescan_ndjson(f.path()).unwrap();
        assert_eq!(s.records, 4);
        let lines: Vec<u64> = s.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![3, 4]);
    }

    #[test]
    fn header_handles_quotes() {
        let f = write("\"a,1\",b\n1,2\n");
        assert_eq!(csv_header(f.path(), b',').unwrap(), vec!["a,1", "b"]);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 ]{0,6}",
            "[a-z,\n\"]{0,6}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ]
    }

    proptest! {
        /// The scanner splits records exactly as a reference CSV reader does, wherever the
        /// 4 MiB read chunks happen to fall (here: any split point in a small file).
        #[test]
        fn record_and_field_counts_match_the_csv_crate(rows in prop::collection::vec(prop::collection::vec(field(), 1..5), 1..20), split in 0usize..200) {
            let text: String = rows.iter().map(|r| r.join(",") + "\n").collect();
            let mut scanner = CsvScanner::new(b',', false);
            let bytes = text.as_bytes();
            let cut = split.min(bytes.len());
            scanner.feed(&bytes[..cut]);
            scanner.feed(&bytes[cut..]);
            let (records, bad, _) = scanner.finish();
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
            let lens: Vec<usize> = reader.records().map(|r| r.unwrap().len()).collect();
            // Lines of a single unquoted empty field are blank lines; both sides skip them.
            prop_assert_eq!(records as usize, lens.len());
            let first = lens.first().copied().unwrap_or(0);
            let want_bad = lens.iter().skip(1).filter(|&&l| l != first).count();
            prop_assert_eq!(bad.len(), want_bad);
        }
    }
}
