//! One pass over each input file before the engine reads it: content hash, byte count, record
//! count, and the records that cannot be parsed at all (wrong field count, invalid UTF-8, a quote
//! never closed, invalid JSON, a JSON object or array where a column holds single values).
//!
//! They are quarantined with their line number. The engine either skips them by index or, when
//! it could not read them at all (invalid UTF-8, an unterminated quote), reads a copy of the file
//! without them. A large CSV file is mapped and scanned in parts, one per thread
//! ([`scan_csv`]); the run hashes it on a thread of its own meanwhile ([`hash_file`]), also from
//! a map. A scan that hashes too (`hash`) reads the file once and hashes beside the scan.
//!
//! A CSV scan also leaves cuts ([`PreScan::cuts`]): line starts outside quotes about a MiB
//! apart, where the engine's CSV reader may start a chunk of its own.

use privprep_kernels::gate::{DistinctKeys, KeyBatch, ValueHasher};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

/// A record that could not be split into the expected fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BadRecord {
    /// 0-based data record index (header excluded), as the engine counts rows.
    pub record: u64,
    /// 1-based physical line the record starts on.
    pub line: u64,
    /// The column the problem is in, when one can be named (from the header or the JSON key).
    pub column: Option<String>,
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
    /// CSV: byte range `[start, end)` of each bad record, in the order of `bad`.
    spans: Vec<(u64, u64)>,
    /// CSV: some bad record cannot be read by the engine at all (invalid UTF-8, a quote never
    /// closed), so it must read a copy of the file without the bad records.
    unreadable: bool,
    /// CSV: offsets where a line starts outside quotes: the first data line, then one every
    /// [`CUT_BYTES`] or so (see [`PreScan::cuts`]).
    cuts: Vec<u64>,
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

    /// True when the engine must read a copy of the file without the bad records
    /// ([`copy_without_spans`]) because it cannot read them.
    pub fn needs_clean_copy(&self) -> bool {
        self.unreadable
    }

    /// Byte ranges `[start, end)` of the bad CSV records.
    pub fn bad_spans(&self) -> &[(u64, u64)] {
        &self.spans
    }

    /// CSV: byte offsets where a line starts outside quotes, in order: the first is where the
    /// data starts (just past the header), each other at least [`CUT_BYTES`] after the one
    /// before. An engine may read the file in chunks between them, each on its own, as a CSV
    /// reader reading the whole file would split them into records.
    pub fn cuts(&self) -> &[u64] {
        &self.cuts
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

/// Reads the file once, hashing on a helper thread (when `hash`; else the digest is empty)
/// while `scan` looks at the bytes.
fn read_hashing(
    path: &Path,
    hash: bool,
    mut scan: impl FnMut(&[u8]),
) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let hasher = std::thread::spawn(move || {
        if !hash {
            return String::new();
        }
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
        if hash && tx.send(buf).is_err() {
            break;
        }
    }
    drop(tx);
    let digest = hasher
        .join()
        .map_err(|_| std::io::Error::other("hashing thread failed"))?;
    Ok((total, digest))
}

/// Hash and size only (Parquet inputs, revocation lists). The file is mapped, not read: the
/// hash reads the page cache's pages in place, with no copy of the file through a buffer.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return read_hashing(path, true, |_| {});
    }
    let map = map_file(&file)?;
    let mut h = Sha256::new();
    for chunk in map.chunks(CHUNK) {
        h.update(chunk);
    }
    Ok((map.len() as u64, hex::encode(h.finalize())))
}

/// The file mapped read-only, for one pass from start to end.
pub(crate) fn map_file(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the map is read-only and lives only for the pass over it. A file truncated
    // meanwhile by another process would fault; the engine maps the same file to read it.
    let map = unsafe { memmap2::Mmap::map(file)? };
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(map)
}

/// Identifier columns whose values the pre-scan gathers for the leak gate, keyed as the
/// engine would key them ([`ValueHasher::value_keys`]).
#[derive(Clone, Copy)]
pub struct IdGather<'a> {
    /// 0-based positions of the identifier columns among a record's fields.
    pub fields: &'a [usize],
    pub hasher: &'a ValueHasher,
    /// Where the keys go.
    pub keys: &'a DistinctKeys,
}

/// Keys gathered before they are put in the set.
const GATHER_BATCH: usize = 1 << 14;

/// The identifier fields of each good record, keyed as the scanner meets them. A field is
/// hashed from the file's bytes as they are, quotes and all: a value's key depends only on
/// its words, and quotes, separators around them and a `\r` are not part of any word, so the
/// key is the one of the value a CSV reader gives.
struct Gather<'m> {
    /// The whole file (fields are found by absolute offsets).
    map: &'m [u8],
    /// By 1-based field number: gathered or not.
    wanted: Vec<bool>,
    /// The highest field number gathered: separators after it are only counted.
    last: u64,
    hasher: ValueHasher,
    keys: &'m DistinctKeys,
    /// Absolute offset of the current field's first byte.
    field_start: u64,
    /// The current record's gathered fields, `[start, end)`.
    spans: Vec<(u64, u64)>,
    batch: KeyBatch,
}

impl<'m> Gather<'m> {
    /// Gathering from the start of the file into `ids`' set.
    fn new(map: &'m [u8], ids: IdGather<'m>) -> Self {
        let last = ids.fields.iter().map(|f| *f as u64 + 1).max().unwrap_or(0);
        let mut wanted = vec![false; last as usize + 1];
        for f in ids.fields {
            wanted[f + 1] = true;
        }
        Gather {
            map,
            wanted,
            last,
            hasher: ids.hasher.clone(),
            keys: ids.keys,
            field_start: 0,
            spans: Vec::new(),
            batch: KeyBatch::new(),
        }
    }

    /// The same fields gathered from byte `start` on, into `keys`.
    fn for_part(&self, keys: &'m DistinctKeys, start: u64) -> Self {
        Gather {
            map: self.map,
            wanted: self.wanted.clone(),
            last: self.last,
            hasher: self.hasher.clone(),
            keys,
            field_start: start,
            spans: Vec::new(),
            batch: KeyBatch::new(),
        }
    }

    /// Field `field` ends at `end` (its separator or newline).
    fn end_field(&mut self, field: u64, end: u64) {
        if self.wanted.get(field as usize).copied().unwrap_or(false) {
            self.spans.push((self.field_start, end));
        }
        self.field_start = end + 1;
    }

    /// The record ends; its fields are keyed when it is a good data record. The next starts at
    /// `next`.
    fn end_record(&mut self, good: bool, next: u64) {
        if good {
            for &(start, end) in &self.spans {
                let bytes = &self.map[start as usize..end as usize];
                if let Some(k) = self.hasher.value_keys_utf8(bytes) {
                    self.batch.push(k);
                }
            }
            if self.batch.len() >= GATHER_BATCH {
                self.flush();
            }
        }
        self.spans.clear();
        self.field_start = next;
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.keys.insert_batch(&mut self.batch);
        }
    }
}

/// Splits CSV bytes into records (RFC 4180 quoting), counts fields per record and finds fields
/// that are not valid UTF-8; with a [`Gather`], keys the identifier fields of good records.
struct CsvScanner<'m> {
    sep: u8,
    has_header: bool,
    /// Header names, to name the column of an invalid field (empty without a header).
    names: Vec<String>,
    expected: Option<u64>,
    in_quotes: bool,
    /// Line the open quote was opened on.
    quote_line: u64,
    fields: u64,
    record_empty: bool,
    /// 1-based field of the first byte of the current record that is not valid UTF-8.
    invalid_field: Option<u64>,
    line: u64,
    record_start_line: u64,
    /// Absolute offset of the current record's first byte.
    record_start: u64,
    /// Absolute offset of the chunk being fed.
    offset: u64,
    /// The start of a UTF-8 sequence cut by the end of the previous chunk (at most 3 bytes).
    utf8_carry: Vec<u8>,
    records: u64,
    header_done: bool,
    bad: Vec<BadRecord>,
    spans: Vec<(u64, u64)>,
    unreadable: bool,
    shifts: Vec<(u64, u64)>,
    /// Line starts outside quotes where the file may be cut ([`PreScan::cuts`]).
    cuts: Vec<u64>,
    /// The next cut is the first line start at or after this offset (a multiple of
    /// `cut_bytes`, so scans in parts cut where one scan cuts).
    next_cut: u64,
    cut_bytes: u64,
    gather: Option<Gather<'m>>,
}

/// Bytes of the UTF-8 sequence a leading byte starts.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

impl<'m> CsvScanner<'m> {
    fn new(sep: u8, has_header: bool) -> Self {
        CsvScanner {
            sep,
            has_header,
            names: Vec::new(),
            expected: None,
            in_quotes: false,
            quote_line: 0,
            fields: 1,
            record_empty: true,
            invalid_field: None,
            line: 1,
            record_start_line: 1,
            record_start: 0,
            offset: 0,
            utf8_carry: Vec::new(),
            records: 0,
            header_done: !has_header,
            bad: Vec::new(),
            spans: Vec::new(),
            unreadable: false,
            shifts: Vec::new(),
            // Without a header the data starts at the first byte.
            cuts: if has_header { Vec::new() } else { vec![0] },
            next_cut: CUT_BYTES,
            cut_bytes: CUT_BYTES,
            gather: None,
        }
    }

    /// A scanner for a part of the file that starts at byte `offset`, as if at the start of a
    /// data record of `expected` fields; its lines and records count from the part's start
    /// until [`CsvScanner::append`] puts them after the parts before it.
    ///
    /// A part that gathers identifier keys puts them in `keys`, its own set, which joins the
    /// first's only if the part is taken on.
    fn part(
        first: &CsvScanner<'m>,
        expected: u64,
        offset: u64,
        keys: Option<&'m DistinctKeys>,
    ) -> Self {
        let mut sc = CsvScanner::new(first.sep, false);
        sc.names = first.names.clone();
        sc.expected = Some(expected);
        sc.offset = offset;
        sc.record_start = offset;
        sc.cuts.clear();
        sc.cut_every(first.cut_bytes);
        sc.gather = first
            .gather
            .as_ref()
            .zip(keys)
            .map(|(g, keys)| g.for_part(keys, offset));
        sc
    }

    /// True when the bytes fed so far end a record outside quotes: the next byte starts one.
    fn at_record_start(&self) -> bool {
        !self.in_quotes
            && self.record_empty
            && self.fields == 1
            && self.invalid_field.is_none()
            && self.utf8_carry.is_empty()
            && self.header_done
    }

    /// Takes on `part`, a scan of the bytes right after this one's (started with
    /// [`CsvScanner::part`] where this one is [`at_record_start`](Self::at_record_start)):
    /// its records, lines and findings numbered after this one's, and its state.
    fn append(&mut self, mut part: CsvScanner<'m>) {
        if let (Some(mine), Some(theirs)) = (&mut self.gather, &mut part.gather) {
            theirs.flush();
            mine.keys.absorb(theirs.keys);
            // The part may end inside a record that the next part goes on with.
            mine.field_start = theirs.field_start;
            mine.spans = std::mem::take(&mut theirs.spans);
        }
        let first_line = if self.has_header { 2 } else { 1 };
        let (lines_before, records_before) = (self.line - 1, self.records);
        // Extra lines before a record: the part counted its own from its first line.
        let base = lines_before + 1 - first_line - records_before;
        let mut shifts = Vec::with_capacity(part.shifts.len() + 1);
        // (Only for a record the part holds: a part of blank lines shifts nothing.)
        if part.records > 0 && part.shifts.first().map(|s| s.0) != Some(0) {
            shifts.push((records_before, base));
        }
        shifts.extend(
            part.shifts
                .iter()
                .map(|&(r, e)| (r + records_before, e + base)),
        );
        for (r, e) in shifts {
            if self.shifts.last().map_or(0, |s| s.1) != e {
                self.shifts.push((r, e));
            }
        }
        self.bad.extend(part.bad.into_iter().map(|mut b| {
            b.record += records_before;
            b.line += lines_before;
            b
        }));
        self.spans.extend(part.spans);
        self.cuts.extend(part.cuts);
        self.next_cut = part.next_cut;
        self.unreadable |= part.unreadable;
        self.in_quotes = part.in_quotes;
        self.quote_line = part.quote_line + lines_before;
        self.fields = part.fields;
        self.record_empty = part.record_empty;
        self.invalid_field = part.invalid_field;
        self.line = part.line + lines_before;
        self.record_start_line = part.record_start_line + lines_before;
        self.record_start = part.record_start;
        self.offset = part.offset;
        self.utf8_carry = part.utf8_carry;
        self.records = records_before + part.records;
    }

    /// Positions (within `bytes`) where an invalid UTF-8 sequence starts; a sequence that began
    /// in the previous chunk and turns out invalid is reported at 0. A sequence cut by the end
    /// of `bytes` is carried over to the next chunk.
    fn invalid_utf8(&mut self, bytes: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut start = 0;
        if !self.utf8_carry.is_empty() {
            let carried = self.utf8_carry.len();
            let need = (4 - carried).min(bytes.len());
            let mut joined = std::mem::take(&mut self.utf8_carry);
            joined.extend_from_slice(&bytes[..need]);
            match std::str::from_utf8(&joined) {
                Ok(_) => start = utf8_width(joined[0]).saturating_sub(carried),
                Err(e) if e.valid_up_to() > 0 => {
                    start = utf8_width(joined[0]).saturating_sub(carried)
                }
                Err(e) => match e.error_len() {
                    Some(n) => {
                        out.push(0);
                        start = n.saturating_sub(carried);
                    }
                    None => {
                        // Still cut short (a tiny chunk): carry on.
                        self.utf8_carry = joined;
                        return out;
                    }
                },
            }
        }
        // Nearly every chunk is valid: a SIMD check says so several times faster, and only a
        // chunk it refuses is walked to find where.
        if simdutf8::basic::from_utf8(&bytes[start.min(bytes.len())..]).is_ok() {
            return out;
        }
        while start < bytes.len() {
            match std::str::from_utf8(&bytes[start..]) {
                Ok(_) => break,
                Err(e) => {
                    let at = start + e.valid_up_to();
                    match e.error_len() {
                        Some(n) => {
                            out.push(at);
                            start = at + n;
                        }
                        None => {
                            self.utf8_carry = bytes[at..].to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn mark_invalid(&mut self, field: u64) {
        if self.invalid_field.is_none() {
            self.invalid_field = Some(field);
        }
    }

    /// Walks the bytes jumping from one quote or newline to the next (memchr), counting
    /// separators in the runs between them, which the compiler vectorizes.
    fn feed(&mut self, bytes: &[u8]) {
        let invalid = self.invalid_utf8(bytes);
        // Invalid sequences start at non-ASCII bytes, so never at a quote or newline.
        let mut invalid = invalid.into_iter().peekable();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let next = memchr::memchr2(b'"', b'\n', rest);
            let end = next.map_or(bytes.len(), |k| i + k);
            if self.in_quotes {
                while invalid.next_if(|&p| p < end).is_some() {
                    self.mark_invalid(self.fields);
                }
                let Some(k) = next else { break };
                if rest[k] == b'"' {
                    self.in_quotes = false;
                } else {
                    self.line += 1;
                }
                i += k + 1;
                continue;
            }
            let run = &rest[..end - i];
            if !run.is_empty() {
                let sep = self.sep;
                while let Some(p) = invalid.next_if(|&p| p < end) {
                    let before = bytes[i..p].iter().filter(|&&b| b == sep).count() as u64;
                    self.mark_invalid(self.fields + before);
                }
                let mut counted = 0;
                if let Some(g) = &mut self.gather {
                    // Field by field up to the last gathered one; the rest are only counted.
                    let base = self.offset + i as u64;
                    // Fields are short: a plain loop finds each separator sooner than a
                    // search set up per field.
                    while self.fields <= g.last {
                        let Some(k) = run[counted..].iter().position(|&b| b == sep) else {
                            break;
                        };
                        g.end_field(self.fields, base + (counted + k) as u64);
                        self.fields += 1;
                        counted += k + 1;
                    }
                }
                self.fields += run[counted..].iter().filter(|&&b| b == sep).count() as u64;
                if self.record_empty && run.iter().any(|&b| b != b'\r') {
                    self.record_empty = false;
                }
            }
            let Some(k) = next else { break };
            if rest[k] == b'"' {
                self.in_quotes = true;
                self.quote_line = self.line;
                self.record_empty = false;
            } else {
                if let Some(g) = &mut self.gather {
                    g.end_field(self.fields, self.offset + (i + k) as u64);
                }
                self.end_record(self.offset + (i + k + 1) as u64);
                self.line += 1;
                self.record_start_line = self.line;
            }
            i += k + 1;
        }
        self.offset += bytes.len() as u64;
    }

    /// Cuts at the first line start at or past each multiple of `bytes` from here on.
    fn cut_every(&mut self, bytes: u64) {
        self.cut_bytes = bytes;
        self.next_cut = self.cut_after(self.offset);
    }

    /// The first multiple of `cut_bytes` after `offset`.
    fn cut_after(&self, offset: u64) -> u64 {
        (offset / self.cut_bytes + 1) * self.cut_bytes
    }

    /// The file may be cut at `at`, a line start outside quotes.
    fn cut(&mut self, at: u64) {
        self.cuts.push(at);
        self.next_cut = self.cut_after(at);
    }

    /// Ends the current record; `end` is the offset just past it (after its newline).
    fn end_record(&mut self, end: u64) {
        // Past the header, every line end outside quotes may be a cut; the header's end is
        // the first.
        if self.header_done && end >= self.next_cut {
            self.cut(end);
        }
        if self.record_empty {
            // Blank lines are skipped by CSV readers; they are not records.
            self.fields = 1;
            self.record_start = end;
            if let Some(g) = &mut self.gather {
                g.end_record(false, end);
            }
            return;
        }
        if !self.header_done {
            self.header_done = true;
            self.cut(end);
            self.expected = Some(self.fields);
            if let Some(g) = &mut self.gather {
                g.end_record(false, end);
            }
        } else {
            let record = self.records;
            let first_line = if self.has_header { 2 } else { 1 };
            let expected_line = first_line + record + self.shifts.last().map_or(0, |s| s.1);
            if self.record_start_line != expected_line {
                self.shifts
                    .push((record, self.record_start_line - first_line - record));
            }
            let problem = match (self.expected, self.invalid_field) {
                (Some(n), _) if n != self.fields => {
                    Some((None, format!("expected {n} fields, found {}", self.fields)))
                }
                (_, Some(field)) => {
                    let column = self.names.get(field as usize - 1).cloned();
                    let error = match &column {
                        Some(name) => {
                            format!(
                                "value is not valid UTF-8 text (field {field}, column `{name}`)"
                            )
                        }
                        None => format!("value is not valid UTF-8 text (field {field})"),
                    };
                    Some((column, error))
                }
                _ => None,
            };
            if self.expected.is_none() {
                self.expected = Some(self.fields);
            }
            if let Some(g) = &mut self.gather {
                g.end_record(problem.is_none(), end);
            }
            if let Some((column, error)) = problem {
                self.push_bad(record, column, error, end);
            }
            self.records += 1;
        }
        self.fields = 1;
        self.record_empty = true;
        self.invalid_field = None;
        self.record_start = end;
    }

    fn push_bad(&mut self, record: u64, column: Option<String>, error: String, end: u64) {
        // The engine cannot decode a record with invalid UTF-8 even to skip it.
        self.unreadable |= self.invalid_field.is_some();
        self.bad.push(BadRecord {
            record,
            line: self.record_start_line,
            column,
            error,
        });
        self.spans.push((self.record_start, end));
    }

    fn finish(mut self) -> CsvScan {
        if !self.utf8_carry.is_empty() {
            // A UTF-8 sequence cut short by the end of the file.
            self.utf8_carry.clear();
            self.mark_invalid(self.fields);
        }
        let end = self.offset;
        if self.in_quotes && self.header_done {
            // An unterminated quote swallows the rest of the file into one record.
            let record = self.records;
            let error = format!(
                "unterminated quoted field: the quote opened on line {} is never closed, so the rest of the file is one record",
                self.quote_line
            );
            self.push_bad(record, None, error, end);
            self.unreadable = true;
            self.in_quotes = false;
            // Already reported: keep the field-count and UTF-8 checks from reporting it again.
            if let Some(n) = self.expected {
                self.fields = n;
            }
            self.invalid_field = None;
            // Nor are its fields gathered.
            if let Some(g) = &mut self.gather {
                g.end_record(false, end);
            }
        } else if let Some(g) = &mut self.gather {
            g.end_field(self.fields, end);
        }
        self.end_record(end);
        if let Some(g) = &mut self.gather {
            g.flush();
        }
        CsvScan {
            records: self.records,
            bad: self.bad,
            spans: self.spans,
            unreadable: self.unreadable,
            shifts: self.shifts,
            cuts: self.cuts,
        }
    }
}

/// What the CSV scanner found.
#[derive(Debug, PartialEq)]
struct CsvScan {
    records: u64,
    bad: Vec<BadRecord>,
    spans: Vec<(u64, u64)>,
    unreadable: bool,
    shifts: Vec<(u64, u64)>,
    cuts: Vec<u64>,
}

/// Lines that may start a chunk of a CSV file are at least this far apart ([`PreScan::cuts`]).
pub const CUT_BYTES: u64 = 1 << 20;

/// Pre-scan of a CSV file, with its SHA-256.
pub fn prescan_csv(path: &Path, sep: u8, has_header: bool) -> std::io::Result<PreScan> {
    scan_csv(path, sep, has_header, true)
}

/// Pre-scan of a CSV file; its SHA-256 only when `hash` (else empty, for [`hash_file`] to
/// compute beside the run).
pub fn scan_csv(path: &Path, sep: u8, has_header: bool, hash: bool) -> std::io::Result<PreScan> {
    scan_csv_with(path, sep, has_header, hash, None, CUT_BYTES)
}

/// [`scan_csv`] with cuts about `cut_bytes` apart (tests cut small files into many chunks).
#[cfg(test)]
pub(crate) fn scan_csv_cutting(path: &Path, sep: u8, cut_bytes: u64) -> std::io::Result<PreScan> {
    scan_csv_with(path, sep, true, false, None, cut_bytes)
}

/// [`scan_csv`] without the hash, gathering the keys of the identifier fields of every good
/// record in `ids` (records the scan finds bad are left out, as the engine leaves them out).
/// The file is mapped and scanned from the map.
pub fn scan_csv_gathering(
    path: &Path,
    sep: u8,
    has_header: bool,
    ids: IdGather,
) -> std::io::Result<PreScan> {
    scan_csv_with(path, sep, has_header, false, Some(ids), CUT_BYTES)
}

fn scan_csv_with(
    path: &Path,
    sep: u8,
    has_header: bool,
    hash: bool,
    ids: Option<IdGather>,
    cut_bytes: u64,
) -> std::io::Result<PreScan> {
    let mut scanner = CsvScanner::new(sep, has_header);
    scanner.cut_every(cut_bytes);
    if has_header {
        // Only to name columns in messages; a header that cannot be read is reported at
        // validate.
        scanner.names = csv_header(path, sep).unwrap_or_default();
    }
    let parallel = !hash && has_header && !scanner.names.is_empty();
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let parts = match parallel {
        true => parallel_parts(&file, len, PART_BYTES)?,
        false => None,
    };
    let (bytes, sha256, scan) = match (parts, ids) {
        (Some(bounds), _) => (
            len,
            String::new(),
            scan_parts(&file, scanner, &bounds, ids)?,
        ),
        // One part, from the map (a field is read back from where it lies in it).
        (None, Some(_)) if len > 0 => (len, String::new(), scan_parts(&file, scanner, &[0], ids)?),
        _ => {
            let (bytes, sha256) = read_hashing(path, hash, |chunk| scanner.feed(chunk))?;
            (bytes, sha256, scanner.finish())
        }
    };
    Ok(PreScan {
        bytes,
        sha256,
        records: scan.records,
        bad: scan.bad,
        line_shifts: scan.shifts,
        first_line: if has_header { 2 } else { 1 },
        spans: scan.spans,
        unreadable: scan.unreadable,
        cuts: scan.cuts,
    })
}

/// Files at least this large are pre-scanned in parts, one per thread.
const PART_BYTES: u64 = 32 << 20;

/// The starts of the parts of `file` (`len` bytes; each part starts just after a newline, the
/// first at 0), when it is large enough to be scanned in parts on this machine's threads.
fn parallel_parts(file: &File, len: u64, min_part: u64) -> std::io::Result<Option<Vec<u64>>> {
    let threads = rayon::current_num_threads() as u64;
    if threads < 2 || len < 2 * min_part {
        return Ok(None);
    }
    let parts = threads.min(len / min_part);
    let mut bounds = vec![0];
    for k in 1..parts {
        if let Some(b) = next_line_start(file, len * k / parts, len)? {
            if b > *bounds.last().unwrap_or(&0) && b < len {
                bounds.push(b);
            }
        }
    }
    Ok((bounds.len() > 1).then_some(bounds))
}

/// The offset just after the first newline at or after `from`.
fn next_line_start(file: &File, from: u64, len: u64) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < len {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        if let Some(k) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(Some(at + k as u64 + 1));
        }
        at += n as u64;
    }
    Ok(None)
}

/// Feeds `scanner` the bytes `[start, end)` of the mapped file, in chunks.
fn feed_range(map: &[u8], scanner: &mut CsvScanner, start: u64, end: u64) {
    for chunk in map[start as usize..end as usize].chunks(CHUNK) {
        scanner.feed(chunk);
    }
}

/// Scans the parts of a file at once: the first with `first` (which reads the header), each
/// other with a scanner of its own that starts as if at the start of a record. A part whose
/// start turns out to be inside a quoted field (a newline in a value) is scanned again, with
/// those after it, by the scanner of the parts before it. The joined result is the one
/// scanning the file in one go gives.
///
/// With `ids`, every part gathers identifier keys: the first into `ids`' set, each other into a
/// set of its own that joins it when the part is taken on.
fn scan_parts(
    file: &File,
    first: CsvScanner<'static>,
    bounds: &[u64],
    ids: Option<IdGather>,
) -> std::io::Result<CsvScan> {
    let map = map_file(file)?;
    let len = map.len() as u64;
    if bounds.last().is_some_and(|&b| b >= len) {
        return Err(std::io::Error::other("the file changed while it was read"));
    }
    let ends: Vec<u64> = bounds.iter().skip(1).copied().chain([len]).collect();
    let expected = first.names.len() as u64;
    let own_keys: Vec<DistinctKeys> = match ids {
        Some(_) => bounds[1..].iter().map(|_| DistinctKeys::new()).collect(),
        None => Vec::new(),
    };
    let mut first: CsvScanner<'_> = first;
    first.gather = ids.map(|ids| Gather::new(&map, ids));
    let mut scanners = vec![first];
    for (k, &b) in bounds[1..].iter().enumerate() {
        let part = CsvScanner::part(&scanners[0], expected, b, own_keys.get(k));
        scanners.push(part);
    }
    let scanned: Vec<CsvScanner> = {
        use rayon::prelude::*;
        scanners
            .into_par_iter()
            .zip(bounds.par_iter().zip(&ends))
            .map(|(mut sc, (&start, &end))| {
                feed_range(&map, &mut sc, start, end);
                sc
            })
            .collect()
    };
    let mut parts = scanned.into_iter().zip(bounds.iter().zip(&ends));
    let Some((mut joined, _)) = parts.next() else {
        return Err(std::io::Error::other("no part to scan"));
    };
    for (part, (&start, &end)) in parts {
        if joined.at_record_start() && joined.expected == Some(expected) {
            joined.append(part);
        } else {
            // The guess was wrong: go on from where the scan really is.
            feed_range(&map, &mut joined, start, end);
        }
    }
    Ok(joined.finish())
}

/// Copies `src` to `dst` without the byte ranges `spans` (sorted, not overlapping): the CSV
/// without its bad records, for the engine to read.
pub fn copy_without_spans(src: &Path, dst: &Path, spans: &[(u64, u64)]) -> std::io::Result<()> {
    use std::io::{BufWriter, Seek, SeekFrom, Write};
    let mut input = File::open(src)?;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(dst)?);
    let mut at = 0u64;
    for &(start, end) in spans {
        if start > at {
            let n = std::io::copy(&mut (&mut input).take(start - at), &mut out)?;
            if n != start - at {
                return Err(std::io::Error::other(
                    "input file changed while it was read",
                ));
            }
        }
        at = end.max(at);
        input.seek(SeekFrom::Start(at))?;
    }
    std::io::copy(&mut input, &mut out)?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// What one NDJSON line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLine {
    /// A JSON object whose values are all single values (string, number, bool, null).
    Flat,
    /// Not a JSON object (or not valid JSON, or not UTF-8): the error, without content.
    Invalid(String),
    /// A JSON object with an object or array as the value of `key`: no manifest type holds
    /// that, and the engine would turn it into JSON text.
    Nested { key: String, kind: &'static str },
}

/// Classifies one NDJSON line (without its newline; surrounding whitespace allowed).
pub fn json_line(text: &[u8]) -> JsonLine {
    let trimmed = text.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return JsonLine::Invalid("not a valid JSON object".to_string());
    }
    match serde_json::from_slice::<shape::Line>(trimmed) {
        Ok(shape::Line(None)) => JsonLine::Flat,
        Ok(shape::Line(Some((key, kind)))) => JsonLine::Nested { key, kind },
        Err(_) if std::str::from_utf8(trimmed).is_err() => {
            JsonLine::Invalid("line is not valid UTF-8 text".to_string())
        }
        Err(_) => JsonLine::Invalid("not a valid JSON object".to_string()),
    }
}

/// Serde visitors that look at the shape of a JSON object's values without keeping them.
mod shape {
    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// A top-level object: the first key whose value is an object or array, and which it is.
    pub struct Line(pub Option<(String, &'static str)>);

    /// A value: `None` for a single value, else `"an object"` / `"an array"`.
    struct Shape(Option<&'static str>);

    /// A key, borrowed from the line when it has no escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> de::Deserialize<'de> for Line {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Line;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
                    let mut first = None;
                    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                        let Shape(kind) = map.next_value()?;
                        if let (Some(kind), None) = (kind, &first) {
                            first = Some((key.into_owned(), kind));
                        }
                    }
                    Ok(Line(first))
                }
            }
            d.deserialize_map(V)
        }
    }

    impl<'de> de::Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl<'de> de::Deserialize<'de> for Shape {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Shape;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON value")
                }
                fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_i128<E>(self, _: i128) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_u128<E>(self, _: u128) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_unit<E>(self) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_none<E>(self) -> Result<Shape, E> {
                    Ok(Shape(None))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Shape(Some("an array")))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Shape(Some("an object")))
                }
            }
            d.deserialize_any(V)
        }
    }
}

/// Pre-scan of an NDJSON file, with its SHA-256: every non-blank line must be one JSON object
/// whose values are single values (an object or array value is quarantined as a type
/// mismatch).
pub fn prescan_ndjson(path: &Path) -> std::io::Result<PreScan> {
    scan_ndjson(path, true)
}

/// [`prescan_ndjson`], with the SHA-256 only when `hash`.
pub fn scan_ndjson(path: &Path, hash: bool) -> std::io::Result<PreScan> {
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
        match json_line(trimmed) {
            JsonLine::Flat => {}
            JsonLine::Invalid(error) => bad.push(BadRecord {
                record,
                line,
                column: None,
                error,
            }),
            JsonLine::Nested { key, kind } => bad.push(BadRecord {
                record,
                line,
                error: format!(
                    "value of `{key}` is {kind}, not a single value of the column's type"
                ),
                column: Some(key),
            }),
        }
        *records += 1;
    };
    let (bytes, sha256) = read_hashing(path, hash, |chunk| {
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
        ..Default::default()
    })
}

/// Header field names of a CSV file (first non-blank record); none for a file without one
/// (empty or blank).
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
    if buf.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(Vec::new());
    }
    let text = String::from_utf8(buf).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the header line is not valid UTF-8 text",
        )
    })?;
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

    /// One field of a generated CSV record: plain, quoted with a separator, a newline or an
    /// escaped quote, empty, or holding a byte that is not UTF-8.
    fn field(kind: u8, i: usize) -> Vec<u8> {
        match kind {
            0 => format!("v{i}").into_bytes(),
            1 => format!("\"a,{i}\"").into_bytes(),
            2 => format!("\"line\n{i}\"").into_bytes(),
            3 => format!("\"say \"\"{i}\"\"\"").into_bytes(),
            4 => Vec::new(),
            5 => vec![b'x', 0xff, b'y'],
            _ => "é€".as_bytes().to_vec(),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Scanning a file in parts, wherever they start (inside quoted values too), finds what
        /// one scan from start to end finds: records, bad records with their lines, byte spans
        /// and line shifts.
        #[test]
        fn a_scan_in_parts_equals_one_scan(
            records in proptest::collection::vec(
                (proptest::collection::vec(0u8..7, 1..5), 0u8..8), 1..40),
            cuts in proptest::collection::vec(0usize..1000, 1..6),
            unterminated in proptest::bool::ANY,
        ) {
            let mut bytes = b"a,b,c\n".to_vec();
            for (i, (fields, end)) in records.iter().enumerate() {
                // Mostly three fields; sometimes fewer or more.
                let row: Vec<Vec<u8>> = (0..3).map(|k| field(*fields.get(k).unwrap_or(&0), i)).chain(
                    (fields.len() == 4).then(|| field(fields[3], i))).take(if fields.len() == 1 { 2 } else { 4 }).collect();
                bytes.extend(row.join(&b',')[..].iter());
                bytes.extend_from_slice(match end { 0 => b"\r\n".as_slice(), 1 => b"\n\n", _ => b"\n" });
            }
            if unterminated {
                bytes.extend_from_slice(b"x,\"open,1\n2,3\n");
            }
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(&bytes).unwrap();
            let whole = {
                let mut sc = CsvScanner::new(b',', true);
                sc.cut_every(64);
                sc.names = csv_header(f.path(), b',').unwrap();
                read_hashing(f.path(), false, |c| sc.feed(c)).unwrap();
                sc.finish()
            };
            let file = File::open(f.path()).unwrap();
            let len = bytes.len() as u64;
            let mut bounds = vec![0u64];
            let mut at: Vec<u64> = cuts.iter().map(|c| (*c as u64 * len) / 1000).collect();
            at.sort();
            for a in at {
                if let Some(b) = next_line_start(&file, a.max(1), len).unwrap() {
                    if b > *bounds.last().unwrap() && b < len {
                        bounds.push(b);
                    }
                }
            }
            let mut first = CsvScanner::new(b',', true);
            first.cut_every(64);
            first.names = csv_header(f.path(), b',').unwrap();
            let parts = scan_parts(&file, first, &bounds, None).unwrap();
            // Cuts too: each the first line start outside quotes at or past a multiple of 64
            // (and the data's start).
            proptest::prop_assert_eq!(&parts, &whole);
            proptest::prop_assert_eq!(whole.cuts.first(), Some(&6));
            for w in whole.cuts.windows(2) {
                proptest::prop_assert!(w[1] / 64 > w[0] / 64);
            }

            // Gathering identifier keys (fields 1 and 3) in the same parts gathers what one
            // scan gathers, and the scan finds the same records.
            let hasher = ValueHasher::from_seed([3, 5]);
            let gather = |bounds: &[u64]| {
                let keys = DistinctKeys::new();
                let ids = IdGather { fields: &[0, 2], hasher: &hasher, keys: &keys };
                let mut first = CsvScanner::new(b',', true);
                first.cut_every(64);
                first.names = csv_header(f.path(), b',').unwrap();
                let scan = scan_parts(&file, first, bounds, Some(ids)).unwrap();
                (scan, keys)
            };
            let (one_scan, one_keys) = gather(&[0]);
            let (parts_scan, parts_keys) = gather(&bounds);
            proptest::prop_assert_eq!(&one_scan, &whole);
            proptest::prop_assert_eq!(&parts_scan, &whole);
            proptest::prop_assert_eq!(parts_keys, one_keys);
        }
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
        assert!(
            s.bad[0].error.starts_with("unterminated quoted field"),
            "{}",
            s.bad[0].error
        );
    }

    /// Regression: an unterminated quote at the end of the file reached the engine, which failed
    /// with a byte offset; now the record is quarantined naming the line the quote opened on,
    /// and the engine reads a copy without it.
    #[test]
    fn unterminated_quote_names_the_line_it_opened_on_and_is_cut_from_the_copy() {
        let f = write("a,b,c\n1,2,3\nS1,\"x\n\ny,z\n");
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.records, 2);
        assert_eq!((s.bad[0].record, s.bad[0].line), (1, 3));
        assert!(
            s.bad[0].error.contains("opened on line 3"),
            "{}",
            s.bad[0].error
        );
        assert!(s.needs_clean_copy());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("clean.csv");
        copy_without_spans(f.path(), &out, s.bad_spans()).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "a,b,c\n1,2,3\n");
    }

    fn write_bytes(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// Regression: a field with invalid UTF-8 failed the run with "invalid utf-8 sequence" and
    /// no file, line or column, even with max_bad_rows set; now it is a bad record naming its
    /// line and column, and the copy the engine reads is valid UTF-8.
    #[test]
    fn invalid_utf8_field_is_a_bad_record_with_line_and_column() {
        let mut text = b"id,email,note\n1,a@x,ok\n2,\"b\n".to_vec();
        text.extend_from_slice(b"c\",\xff\xfe\n3,\xc3\xa9t\xc3\xa9,fine\n4,d,\xe2\x82\n");
        let f = write_bytes(&text);
        let s = prescan_csv(f.path(), b',', true).unwrap();
        assert_eq!(s.records, 4);
        let got: Vec<(u64, u64, Option<&str>)> = s
            .bad
            .iter()
            .map(|b| (b.record, b.line, b.column.as_deref()))
            .collect();
        assert_eq!(got, vec![(1, 3, Some("note")), (3, 6, Some("note"))]);
        assert!(
            s.bad[0].error.contains("not valid UTF-8"),
            "{}",
            s.bad[0].error
        );
        assert!(s.bad[0].error.contains("`note`"), "{}", s.bad[0].error);
        assert!(s.needs_clean_copy());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("clean.csv");
        copy_without_spans(f.path(), &out, s.bad_spans()).unwrap();
        let clean = std::fs::read(&out).unwrap();
        assert_eq!(
            String::from_utf8(clean).unwrap(),
            "id,email,note\n1,a@x,ok\n3,\u{e9}t\u{e9},fine\n"
        );
    }

    #[test]
    fn utf8_is_checked_across_every_chunk_split() {
        let text = "id,name\n1,Zo\u{eb} \u{20ac} \u{1f600}\n2,\"\u{e9}\u{e9}\"\n".as_bytes();
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let mut sc = CsvScanner::new(b',', true);
                sc.feed(&text[..cut]);
                sc.feed(&text[cut..cut2]);
                sc.feed(&text[cut2..]);
                let scan = sc.finish();
                assert!(scan.bad.is_empty(), "split at {cut}/{cut2}: {:?}", scan.bad);
                assert_eq!(scan.records, 2);
            }
        }
        let mut bad = text.to_vec();
        bad.insert(15, 0x80); // a stray continuation byte in the second field of record 0
        for cut in 0..=bad.len() {
            let mut sc = CsvScanner::new(b',', true);
            sc.names = vec!["id".into(), "name".into()];
            sc.feed(&bad[..cut]);
            sc.feed(&bad[cut..]);
            let scan = sc.finish();
            assert_eq!(scan.bad.len(), 1, "split at {cut}");
            assert_eq!(
                scan.bad[0].column.as_deref(),
                Some("name"),
                "split at {cut}"
            );
        }
    }

    #[test]
    fn empty_or_blank_file_has_no_header() {
        assert!(csv_header(write("").path(), b',').unwrap().is_empty());
        assert!(csv_header(write("\n \n").path(), b',').unwrap().is_empty());
    }

    /// Regression: an object or array in an NDJSON column was written as JSON text.
    #[test]
    fn ndjson_object_or_array_value_is_a_bad_record_naming_the_key() {
        let f =
            write("{\"a\":1,\"email\":[\"x@y\"]}\n{\"a\":2,\"email\":\"s\"}\n{\"a\":{\"b\":1}}\n");
        let s = prescan_ndjson(f.path()).unwrap();
        assert_eq!(s.records, 3);
        let got: Vec<(u64, Option<&str>)> = s
            .bad
            .iter()
            .map(|b| (b.line, b.column.as_deref()))
            .collect();
        assert_eq!(got, vec![(1, Some("email")), (3, Some("a"))]);
        assert!(s.bad[0].error.contains("an array"), "{}", s.bad[0].error);
        assert!(!s.bad[0].error.contains("x@y"));
        assert_eq!(json_line(b"{\"k\\u0041\": null}"), JsonLine::Flat);
        assert!(
            matches!(json_line(b"{\"a\": \"\xff\"}"), JsonLine::Invalid(e) if e.contains("UTF-8"))
        );
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

    /// A value with words: letters, digits, spaces, `@ . -`, an accented letter; quoted
    /// (with separators, newlines and escaped quotes inside) or not.
    fn id_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 @.é-]{0,14}",
            "[a-zA-Z0-9 ,\n\"@.é]{0,14}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ]
    }

    proptest! {
        /// The identifier keys the scan gathers are the keys of the values a reference CSV
        /// reader gives for the same fields of every record of the right length (records of
        /// another length are bad and left out), whatever the quoting and line ends.
        #[test]
        fn gathered_keys_are_those_of_the_values_a_csv_reader_gives(
            rows in prop::collection::vec((prop::collection::vec(id_value(), 2..5), any::<bool>()), 1..30),
        ) {
            let mut text = String::from("id,name,email\n");
            for (fields, crlf) in &rows {
                text.push_str(&fields.join(","));
                text.push_str(if *crlf { "\r\n" } else { "\n" });
            }
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
            let hasher = ValueHasher::from_seed([1, 2]);
            let gathered = DistinctKeys::new();
            let ids = IdGather { fields: &[0, 2], hasher: &hasher, keys: &gathered };
            let scan = scan_csv_gathering(f.path(), b',', true, ids).unwrap();
            let expected = DistinctKeys::new();
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
            let mut good = 0;
            for r in reader.records() {
                let r = r.unwrap();
                if r.len() == 3 {
                    good += 1;
                    expected.insert_all(&hasher, [&r[0], &r[2]]);
                }
            }
            prop_assert_eq!(scan.records - scan.bad.len() as u64, good);
            prop_assert_eq!(gathered, expected);
        }

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
            let CsvScan { records, bad, .. } = scanner.finish();
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
