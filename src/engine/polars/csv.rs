//! The engine's own CSV reading: each clean CSV input read in chunks between the pre-scan's
//! cuts, on threads of its own, each chunk's records split by [`privprep_kernels::csv`] (the
//! rules of polars' reader) into a frame, run through the lowered query, and handed to the
//! sink in file order.
//!
//! polars' streaming CSV source finds its chunks' line ends one byte at a time, on one thread
//! (`CountLines`), and splits fields one byte at a time too when built without nightly SIMD.
//! The pre-scan already walked every line, so it leaves cuts (line starts outside quotes)
//! that let chunks be read at once, and fields are found 64 bytes at a time. The values, the
//! row indices and the order are the ones the polars scan gives (`tests` check that).
//!
//! Only inputs the pre-scan found without a bad record are read so; a run with any other
//! input, or that needs two passes (k-anonymity), uses polars' scan.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use polars::prelude::*;
use polars_arrow::array::MutableBinaryViewArray;
use privprep_kernels::csv::{value, Field, Records};

use crate::ingest::{InputFile, FILE, ROW};
use crate::spec::SourceFormat;

/// Chunks aim at this many bytes (fewer for small files, so every thread gets some).
const CHUNK_BYTES: u64 = 8 << 20;

/// True when every input can be read so.
pub fn readable(inputs: &[InputFile]) -> bool {
    !inputs.is_empty()
        && inputs.iter().all(|i| {
            i.format == SourceFormat::Csv && i.scan.bad.is_empty() && !i.scan.cuts().is_empty()
        })
}

/// One chunk of one input: byte range `[start, end)`.
#[derive(Clone, Copy)]
struct Chunk {
    file: usize,
    start: u64,
    end: u64,
    /// The first chunk of its file (its first row is row 0).
    first: bool,
}

/// The chunks of every input, in order: runs of the pre-scan's cuts about `target` bytes
/// long.
fn chunks(inputs: &[InputFile], threads: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        let len = input.scan.bytes;
        let cuts = input.scan.cuts();
        let target = (len / (4 * threads as u64)).clamp(1, CHUNK_BYTES);
        let mut bounds = vec![cuts[0]];
        for &c in cuts[1..].iter().take_while(|&&c| c < len) {
            if c - bounds[bounds.len() - 1] >= target {
                bounds.push(c);
            }
        }
        if bounds[bounds.len() - 1] < len {
            bounds.push(len);
        }
        out.extend(bounds.windows(2).enumerate().map(|(i, w)| Chunk {
            file,
            start: w[0],
            end: w[1],
            first: i == 0,
        }));
    }
    out
}

/// The columns read from each input: `names` are the CSV header, `wanted` says which of them
/// the run uses.
pub struct Columns {
    pub names: Vec<PlSmallStr>,
    pub wanted: Vec<bool>,
}

impl Columns {
    /// Fields to split per record: up to the last wanted one.
    fn width(&self) -> usize {
        self.wanted.iter().rposition(|w| *w).map_or(0, |i| i + 1)
    }
}

/// Where a chunk is, for messages, and about how many records it holds.
struct Place<'a> {
    path: &'a std::path::Path,
    offset: u64,
    rows: usize,
}

/// A chunk's records as string columns (the wanted ones), without row indices; and its
/// number of rows.
fn chunk_frame(
    bytes: &[u8],
    sep: u8,
    columns: &Columns,
    place: Place,
) -> PolarsResult<(Vec<Column>, usize)> {
    let Place {
        path,
        offset,
        rows: expected,
    } = place;
    if simdutf8::basic::from_utf8(bytes).is_err() {
        polars_bail!(ComputeError: "`{}`: invalid UTF-8 after byte {} (the file changed after it was scanned)", path.display(), offset);
    }
    let width = columns.width().max(1);
    let estimate = expected + expected / 16 + 16;
    let mut builders: Vec<Option<MutableBinaryViewArray<str>>> = (0..width)
        .map(|i| {
            columns
                .wanted
                .get(i)
                .copied()
                .unwrap_or(false)
                .then(|| MutableBinaryViewArray::with_capacity(estimate))
        })
        .collect();
    let mut records = Records::new(bytes, sep);
    let (mut fields, mut scratch) = (Vec::<Field>::with_capacity(width), Vec::new());
    let mut rows = 0usize;
    while records.next_into(width, &mut fields) {
        rows += 1;
        for (b, f) in builders.iter_mut().zip(&fields) {
            let Some(b) = b else { continue };
            let v = value(bytes, *f, &mut scratch).map_err(|e| {
                polars_err!(ComputeError: "`{}`, byte {}: {}", path.display(), offset + f.start as u64, e)
            })?;
            match v {
                // SAFETY: `bytes` is valid UTF-8 (checked above) and fields are cut at ASCII
                // bytes (separators, newlines, quotes, `\r`); unquoting removes only quotes.
                Some(v) => b.push_value(unsafe { std::str::from_utf8_unchecked(v) }),
                None => b.push_null(),
            }
        }
    }
    let cols = builders
        .into_iter()
        .zip(&columns.names)
        .filter_map(|(b, name)| {
            b.map(|b| StringChunked::with_chunk(name.clone(), b.freeze()).into_column())
        })
        .collect();
    Ok((cols, rows))
}

/// A chunk's frame in, the stages' result out.
pub type Query<'a> = &'a (dyn Fn(DataFrame) -> PolarsResult<DataFrame> + Sync);

/// Takes one result; `true` stops the reading.
pub type SinkFn<'a> = &'a (dyn Fn(DataFrame) -> PolarsResult<bool> + Sync);

/// Reads every input (all [`readable`]) in chunks on `threads` threads: each chunk's frame,
/// with `__row` and `__file`, goes through `query`, and the results reach `sink` one at a
/// time, in file and row order. The first error stops every thread and is returned; so does a
/// `true` from `sink`, without an error.
pub fn read(
    inputs: &[InputFile],
    sep: u8,
    columns: &Columns,
    threads: usize,
    query: Query,
    sink: SinkFn,
) -> PolarsResult<()> {
    let threads = threads.max(1);
    let maps = inputs
        .iter()
        .map(|i| map(&i.path, i.scan.bytes))
        .collect::<PolarsResult<Vec<_>>>()?;
    let chunks = chunks(inputs, threads);
    let reader = Reader {
        shared: Shared {
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            starts: Mutex::new(chunks.iter().map(|c| c.first.then_some(0u64)).collect()),
            order: Mutex::new(Order::default()),
            started: Condvar::new(),
            sunk: Condvar::new(),
        },
        inputs,
        maps,
        chunks,
        sep,
        columns,
        threads,
        query,
        sink,
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                if let Err(e) = reader.work() {
                    reader.shared.fail(e);
                }
            });
        }
    });
    match reader.shared.error.into_inner() {
        Ok(Some(e)) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(poisoned()),
    }
}

/// The file mapped read-only, checked to be the size the pre-scan saw.
fn map(path: &std::path::Path, bytes: u64) -> PolarsResult<Option<memmap2::Mmap>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len != bytes {
        polars_bail!(ComputeError: "`{}` changed after it was scanned", path.display());
    }
    if len == 0 {
        return Ok(None);
    }
    Ok(Some(crate::ingest::prescan::map_file(&file)?))
}

/// What every reading thread reads with.
struct Reader<'a> {
    shared: Shared,
    inputs: &'a [InputFile],
    maps: Vec<Option<memmap2::Mmap>>,
    chunks: Vec<Chunk>,
    sep: u8,
    columns: &'a Columns,
    threads: usize,
    query: Query<'a>,
    sink: SinkFn<'a>,
}

/// What the reading threads share.
struct Shared {
    /// The next chunk to take.
    next: AtomicUsize,
    stop: AtomicBool,
    error: Mutex<Option<PolarsError>>,
    /// Per chunk, its first row's index once known (the chunk before it was split).
    starts: Mutex<Vec<Option<u64>>>,
    /// A chunk's start became known (waited on with `starts`).
    started: Condvar,
    order: Mutex<Order>,
    /// The sink took a result (waited on with `order`).
    sunk: Condvar,
}

/// Results waiting for their turn at the sink.
#[derive(Default)]
struct Order {
    /// The chunk the sink takes next.
    next: usize,
    ready: BTreeMap<usize, DataFrame>,
    /// A thread is handing results to the sink.
    sinking: bool,
}

impl Shared {
    fn fail(&self, e: PolarsError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.halt();
    }

    /// Stops every thread: each finishes what it holds, takes no more, and stops waiting.
    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Every waiting thread is woken, with the locks its wait holds taken first so none
        // misses it.
        drop(self.starts.lock());
        self.started.notify_all();
        drop(self.order.lock());
        self.sunk.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

fn poisoned() -> PolarsError {
    polars_err!(ComputeError: "the CSV reader's state was poisoned")
}

impl Reader<'_> {
    /// One reading thread: takes chunks in order until none is left.
    fn work(&self) -> PolarsResult<()> {
        let shared = &self.shared;
        loop {
            let k = shared.next.fetch_add(1, Ordering::SeqCst);
            if k >= self.chunks.len() || shared.stopped() {
                return Ok(());
            }
            // At most a few results wait for the sink: memory stays bounded when it is slower.
            {
                let mut o = shared.order.lock().map_err(|_| poisoned())?;
                while k >= o.next + 2 * self.threads && !shared.stopped() {
                    o = shared.sunk.wait(o).map_err(|_| poisoned())?;
                }
            }
            let c = self.chunks[k];
            let bytes = self.maps[c.file]
                .as_deref()
                .map_or(&[][..], |m| &m[c.start as usize..c.end as usize]);
            // Records in the chunk, about: the file's mean record length says.
            let scan = &self.inputs[c.file].scan;
            let mean = scan.bytes / scan.records.max(1);
            let place = Place {
                path: &self.inputs[c.file].path,
                offset: c.start,
                rows: (bytes.len() as u64 / mean.max(1)) as usize,
            };
            let (mut cols, rows) = chunk_frame(bytes, self.sep, self.columns, place)?;
            // This chunk's first row follows the last of the chunk before it.
            let start = {
                let mut starts = shared.starts.lock().map_err(|_| poisoned())?;
                while starts[k].is_none() && !shared.stopped() {
                    starts = shared.started.wait(starts).map_err(|_| poisoned())?;
                }
                let Some(start) = starts[k] else {
                    return Ok(());
                };
                if self.chunks.get(k + 1).is_some_and(|n| !n.first) {
                    starts[k + 1] = Some(start + rows as u64);
                }
                start
            };
            shared.started.notify_all();
            cols.push(
                UInt64Chunked::from_vec(ROW.into(), (start..start + rows as u64).collect())
                    .into_column(),
            );
            cols.push(Column::new_scalar(
                FILE.into(),
                Scalar::new(DataType::UInt32, AnyValue::UInt32(c.file as u32)),
                rows,
            ));
            let frame = DataFrame::new_with_height(rows, cols)?;
            let out = polars_core::POOL.without_threading(|| (self.query)(frame))?;
            self.hand_over(k, out)?;
        }
    }

    /// Puts chunk `k`'s result in line for the sink, and hands the sink every result whose turn
    /// has come unless another thread is already doing so.
    fn hand_over(&self, k: usize, out: DataFrame) -> PolarsResult<()> {
        let shared = &self.shared;
        let mut o = shared.order.lock().map_err(|_| poisoned())?;
        o.ready.insert(k, out);
        if o.sinking {
            return Ok(());
        }
        o.sinking = true;
        loop {
            let turn = o.next;
            let Some(df) = o.ready.remove(&turn) else {
                o.sinking = false;
                return Ok(());
            };
            drop(o);
            let stop = (self.sink)(df);
            o = shared.order.lock().map_err(|_| poisoned())?;
            o.next += 1;
            shared.sunk.notify_all();
            match stop {
                Ok(false) => {}
                Ok(true) => {
                    o.sinking = false;
                    drop(o);
                    shared.halt();
                    return Ok(());
                }
                Err(e) => {
                    o.sinking = false;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::prescan::scan_csv_cutting;
    use proptest::prelude::*;

    fn input(text: &str, sep: u8, cut: u64) -> (tempfile::NamedTempFile, InputFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        let scan = scan_csv_cutting(f.path(), sep, cut).unwrap();
        let input = InputFile {
            path: f.path().to_path_buf(),
            format: SourceFormat::Csv,
            scan,
        };
        (f, input)
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    /// What polars' scan of the inputs gives, as the run reads them otherwise.
    fn by_polars(inputs: &[InputFile], sep: u8, names: &[String]) -> PolarsResult<DataFrame> {
        let dir = tempfile::tempdir().unwrap();
        let scans = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                crate::ingest::scan_input(input, i as u32, sep, names, dir.path())
                    .map_err(|e| polars_err!(ComputeError: "{}", e))
            })
            .collect::<PolarsResult<Vec<_>>>()?;
        concat(scans, UnionArgs::default())?.collect_with_engine(Engine::Streaming)
    }

    /// What this reader gives for the same inputs, every column wanted, on `threads` threads.
    fn by_chunks(
        inputs: &[InputFile],
        sep: u8,
        names: &[String],
        threads: usize,
    ) -> PolarsResult<DataFrame> {
        let columns = Columns {
            names: names.iter().map(|n| n.as_str().into()).collect(),
            wanted: vec![true; names.len()],
        };
        let frames = Mutex::new(Vec::new());
        read(
            inputs,
            sep,
            &columns,
            threads,
            &Ok::<DataFrame, PolarsError>,
            &|df| {
                frames.lock().unwrap().push(df);
                Ok(false)
            },
        )?;
        let frames = frames.into_inner().unwrap();
        let mut all = DataFrame::empty();
        for f in frames {
            if all.width() == 0 {
                all = f;
            } else {
                all.vstack_mut(&f)?;
            }
        }
        Ok(all)
    }

    fn same(a: &DataFrame, b: &DataFrame, names: &[String]) -> bool {
        let cols: Vec<PlSmallStr> = names
            .iter()
            .map(|n| n.as_str().into())
            .chain([ROW.into(), FILE.into()])
            .collect();
        match (a.select(cols.clone()), b.select(cols)) {
            (Ok(a), Ok(b)) => a.equals_missing(&b),
            // No rows: polars' scan may leave the frame without columns.
            _ => a.height() == 0 && b.height() == 0,
        }
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9 ]{0,8}",
            2 => "[a-z ;,\r\n\"]{0,40}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
            1 => Just(String::new()),
            1 => Just("\"\"".to_string()),
            1 => "[a-zé€]{1,6}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Every clean CSV file reads to the frame polars' scan gives, values, nulls, row
        /// indices and order, however it is cut into chunks and on however many threads:
        /// quoted separators and newlines, doubled quotes, `\r\n`, blank lines, empty and
        /// quoted empty fields, a last line without its newline.
        #[test]
        fn chunks_read_as_polars_scan_reads(
            rows in prop::collection::vec(
                (prop::collection::vec(field(), 3..=3), 0u8..6), 0..60),
            sep in prop::sample::select(vec![b',', b';', b'\t']),
            cut in prop::sample::select(vec![16u64, 64, 1 << 20]),
            threads in 1usize..4,
            last_newline in any::<bool>(),
        ) {
            let names = names(3);
            let sep_s = (sep as char).to_string();
            let mut text = names.join(&sep_s) + "\n";
            for (i, (fields, end)) in rows.iter().enumerate() {
                text.push_str(&fields.join(&sep_s));
                if i + 1 < rows.len() || last_newline {
                    text.push_str(match end { 0 => "\r\n", 1 => "\n\n", _ => "\n" });
                }
            }
            let (_f, input) = input(&text, sep, cut);
            prop_assume!(readable(std::slice::from_ref(&input)));
            let inputs = [input];
            let theirs = by_polars(&inputs, sep, &names);
            let ours = by_chunks(&inputs, sep, &names, threads);
            match (&theirs, &ours) {
                (Ok(t), Ok(o)) => prop_assert!(same(t, o, &names), "polars:\n{t}\nours:\n{o}"),
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "polars: {theirs:?}\nours: {ours:?}"),
            }
        }
    }

    /// Several inputs: each file's rows are numbered from 0 and carry the file's index.
    #[test]
    fn each_input_numbers_its_own_rows() {
        let names = names(2);
        let a = "c0,c1\n".to_string()
            + &(0..500)
                .map(|i| format!("{i},\"x,{i}\"\n"))
                .collect::<String>();
        let b = "c0,c1\n".to_string() + &(0..300).map(|i| format!("{i},y\n")).collect::<String>();
        let (_fa, ia) = input(&a, b',', 256);
        let (_fb, ib) = input(&b, b',', 256);
        let inputs = [ia, ib];
        assert!(readable(&inputs));
        assert!(chunks(&inputs, 2).len() > 4);
        let theirs = by_polars(&inputs, b',', &names).unwrap();
        let ours = by_chunks(&inputs, b',', &names, 2).unwrap();
        assert_eq!(ours.height(), 800);
        assert!(same(&theirs, &ours, &names));
        let files = ours.column(FILE).unwrap().u32().unwrap();
        assert_eq!(files.get(499), Some(0));
        assert_eq!(files.get(500), Some(1));
        assert_eq!(ours.column(ROW).unwrap().u64().unwrap().get(500), Some(0));
    }

    /// An error in one chunk's query stops the reading and comes back; nothing after it
    /// reaches the sink.
    #[test]
    fn a_failing_chunk_stops_the_read() {
        let text = "c0\n".to_string() + &(0..2000).map(|i| format!("{i}\n")).collect::<String>();
        let (_f, input) = input(&text, b',', 64);
        let inputs = [input];
        let columns = Columns {
            names: vec!["c0".into()],
            wanted: vec![true],
        };
        let seen = Mutex::new(Vec::new());
        let failing = |df: DataFrame| -> PolarsResult<DataFrame> {
            let first = df.column(ROW)?.u64()?.get(0).unwrap_or(0);
            if first > 1000 {
                polars_bail!(ComputeError: "chunk failed");
            }
            Ok(df)
        };
        let err = read(&inputs, b',', &columns, 2, &failing, &|df| {
            seen.lock()
                .unwrap()
                .push(df.column(ROW)?.u64()?.get(0).unwrap_or(0));
            Ok(false)
        })
        .unwrap_err();
        assert!(err.to_string().contains("chunk failed"));
        let seen = seen.into_inner().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
        assert!(seen.iter().all(|&r| r <= 1000));
    }

    /// Columns not wanted are not built; fields after the last wanted one are not split.
    #[test]
    fn only_wanted_columns_are_read() {
        let text = "a,b,c\n1,\"x\ny\",3\n4,5,6\n";
        let (_f, input) = input(text, b',', 1 << 20);
        let columns = Columns {
            names: vec!["a".into(), "b".into(), "c".into()],
            wanted: vec![false, true, false],
        };
        let frames = Mutex::new(Vec::new());
        read(
            &[input],
            b',',
            &columns,
            1,
            &Ok::<DataFrame, PolarsError>,
            &|df| {
                frames.lock().unwrap().push(df);
                Ok(false)
            },
        )
        .unwrap();
        let frames = frames.into_inner().unwrap();
        let df = &frames[0];
        assert_eq!(
            df.get_column_names_str(),
            vec!["b", ROW, FILE],
            "only b, with the row index and file"
        );
        let b: Vec<Option<&str>> = df.column("b").unwrap().str().unwrap().into_iter().collect();
        assert_eq!(b, vec![Some("x\ny"), Some("5")]);
    }
}
