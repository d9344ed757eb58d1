//! The one string-kernel adapter: a string column (and, when a kernel needs the row's context,
//! further string columns beside it) split into equal row slices, mapped in parallel with rayon,
//! each slice writing into one builder of the output type, the pieces appended in order. In
//! parallel only where the engine itself would be: its streaming pipelines already keep every
//! thread busy, one morsel each, and evaluate expressions without threads of their own.
//!
//! The per-slice closure owns its scratch state (a reused buffer, a text rewriter) for the
//! whole slice; [`Slice::map_kernel`] is the common case of a `&str` kernel whose nulls stay null.

use ::polars::prelude::*;
use privprep_kernels::array::map_values;
use rayon::prelude::*;

use crate::ingest::value_map;

/// Below this many rows a column is mapped on the calling thread; a parallel slice is never
/// shorter than half of it.
const PARALLEL_MIN: usize = 4 * 1024;

/// The slices a column of `n` rows is mapped in: one below [`PARALLEL_MIN`] rows, and one
/// where the engine evaluates an expression without threads (each streaming pipeline, whose
/// morsels are already mapped in parallel with the others': splitting them again only adds
/// hand-overs between threads, about 5% of a streaming run's time). Otherwise one per thread.
fn slices(n: usize) -> usize {
    if n < PARALLEL_MIN {
        return 1;
    }
    polars_core::POOL
        .current_num_threads()
        .clamp(1, n / (PARALLEL_MIN / 2))
}

/// An output type the adapter can build: String, Boolean, UInt64 or Int32.
pub trait Output: PolarsDataType + Sized {
    /// The builder one slice appends to.
    type Builder;
    fn builder(name: PlSmallStr, capacity: usize) -> Self::Builder;
    fn finish(builder: Self::Builder) -> ChunkedArray<Self>;
    /// Appends a later slice's chunks (only array pointers move).
    fn append(out: &mut ChunkedArray<Self>, piece: ChunkedArray<Self>) -> PolarsResult<()>;
}

impl Output for StringType {
    type Builder = StringChunkedBuilder;
    fn builder(name: PlSmallStr, capacity: usize) -> Self::Builder {
        StringChunkedBuilder::new(name, capacity)
    }
    fn finish(builder: Self::Builder) -> StringChunked {
        builder.finish()
    }
    fn append(out: &mut ChunkedArray<Self>, piece: ChunkedArray<Self>) -> PolarsResult<()> {
        out.append_owned(piece)
    }
}

impl Output for BooleanType {
    type Builder = BooleanChunkedBuilder;
    fn builder(name: PlSmallStr, capacity: usize) -> Self::Builder {
        BooleanChunkedBuilder::new(name, capacity)
    }
    fn finish(builder: Self::Builder) -> BooleanChunked {
        builder.finish()
    }
    fn append(out: &mut ChunkedArray<Self>, piece: ChunkedArray<Self>) -> PolarsResult<()> {
        out.append_owned(piece)
    }
}

macro_rules! primitive_output {
    ($($t:ty),*) => {$(
        impl Output for $t {
            type Builder = PrimitiveChunkedBuilder<$t>;
            fn builder(name: PlSmallStr, capacity: usize) -> Self::Builder {
                PrimitiveChunkedBuilder::new(name, capacity)
            }
            fn finish(builder: Self::Builder) -> ChunkedArray<$t> {
                builder.finish()
            }
            fn append(out: &mut ChunkedArray<$t>, piece: ChunkedArray<$t>) -> PolarsResult<()> {
                out.append_owned(piece)
            }
        }
    )*};
}
primitive_output!(UInt64Type, Int32Type);

/// One row slice: the mapped column's values and the context columns' values beside them.
pub struct Slice<'a> {
    values: &'a StringChunked,
    context: Vec<Vec<Option<&'a str>>>,
}

impl<'a> Slice<'a> {
    /// Rows in the slice.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True for an empty slice.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The mapped column's values, in order (array by array: the chunked array's own
    /// iterator is dynamically dispatched per value).
    pub fn values(&self) -> impl Iterator<Item = Option<&'a str>> + 'a {
        crate::ingest::texts(self.values)
    }

    /// Row `i`'s context values, in the order the context columns were given.
    pub fn context(&self, i: usize) -> impl Iterator<Item = Option<&'a str>> + '_ {
        self.context
            .iter()
            .map(move |c| c.get(i).copied().flatten())
    }

    /// Appends `f` of every non-null value through one reused buffer; nulls stay null.
    pub fn map_kernel(&self, out: &mut StringChunkedBuilder, f: impl FnMut(&str, &mut String)) {
        map_values(self.values(), f, |v| out.append_option(v));
    }
}

/// The adapter as an expression: `input` (and `context`, all cast to text) mapped slice by slice
/// through `per_slice`, which appends exactly one output value per row of its slice.
pub fn map_str<O, F>(input: Expr, context: Vec<Expr>, per_slice: F) -> Expr
where
    O: Output,
    ChunkedArray<O>: IntoColumn,
    F: Fn(&Slice<'_>, &mut O::Builder) -> PolarsResult<()> + Send + Sync + 'static,
{
    let output =
        |_: &Schema, field: &Field| Ok(Field::new(field.name().clone(), O::get_static_dtype()));
    let input = input.cast(DataType::String);
    if context.is_empty() {
        return value_map(
            input,
            move |c| Ok(map_columns::<O>(&[c.str()?.clone()], &per_slice)?.into_column()),
            output,
        );
    }
    let context: Vec<Expr> = context
        .into_iter()
        .map(|e| e.cast(DataType::String))
        .collect();
    input.map_many(
        move |cols: &mut [Column]| {
            let cols = cols
                .iter()
                .map(|c| c.str().cloned())
                .collect::<PolarsResult<Vec<_>>>()?;
            Ok(map_columns::<O>(&cols, &per_slice)?.into_column())
        },
        &context,
        move |schema, fields| output(schema, &fields[0]),
    )
}

/// A string column visited slice by slice in parallel by `visit` (which keeps what it needs
/// elsewhere, e.g. keys in a shared set), the rows of each slice as Arrow arrays; the column it
/// gives is all null, the same length, so nothing of the input reaches the sink.
pub fn visit_str<F>(input: Expr, visit: F) -> Expr
where
    F: Fn(&StringChunked) + Send + Sync + 'static,
{
    let output =
        |_: &Schema, field: &Field| Ok(Field::new(field.name().clone(), DataType::Boolean));
    value_map(
        input.cast(DataType::String),
        move |c| {
            let ca = c.str()?;
            let n = ca.len();
            let parts = slices(n);
            if parts == 1 {
                visit(ca);
            } else {
                let step = n.div_ceil(parts);
                (0..parts)
                    .into_par_iter()
                    .for_each(|i| visit(&ca.slice((i * step) as i64, step)));
            }
            Ok(BooleanChunked::full_null(ca.name().clone(), n).into_column())
        },
        output,
    )
}

/// The adapter over materialized columns: `columns[0]` is mapped, the rest are its context (of
/// the same length). The output is named after `columns[0]`.
pub fn map_columns<O: Output>(
    columns: &[StringChunked],
    per_slice: &(dyn Fn(&Slice<'_>, &mut O::Builder) -> PolarsResult<()> + Sync),
) -> PolarsResult<ChunkedArray<O>> {
    let n = columns[0].len();
    let parts = slices(n);
    if parts == 1 {
        return map_slice::<O>(columns, 0, n, per_slice);
    }
    let step = n.div_ceil(parts);
    let pieces = (0..parts)
        .into_par_iter()
        .map(|i| map_slice::<O>(columns, i * step, step, per_slice))
        .collect::<PolarsResult<Vec<_>>>()?;
    let mut pieces = pieces.into_iter();
    let mut out = pieces
        .next()
        .unwrap_or_else(|| O::finish(O::builder(columns[0].name().clone(), 0)));
    for p in pieces {
        O::append(&mut out, p)?;
    }
    Ok(out)
}

/// A string kernel over a whole string column; nulls stay null.
pub fn map_str_column(ca: &StringChunked, f: &(dyn Fn(&str, &mut String) + Sync)) -> StringChunked {
    map_columns::<StringType>(std::slice::from_ref(ca), &|s, out| {
        s.map_kernel(out, f);
        Ok(())
    })
    .expect("a string kernel cannot fail")
}

fn map_slice<O: Output>(
    columns: &[StringChunked],
    offset: usize,
    len: usize,
    per_slice: &(dyn Fn(&Slice<'_>, &mut O::Builder) -> PolarsResult<()> + Sync),
) -> PolarsResult<ChunkedArray<O>> {
    let sliced: Vec<StringChunked> = columns
        .iter()
        .map(|c| c.slice(offset as i64, len))
        .collect();
    // One pointer per context value, per slice: the values themselves are not copied.
    let slice = Slice {
        values: &sliced[0],
        context: sliced[1..]
            .iter()
            .map(|c| crate::ingest::texts(c).collect())
            .collect(),
    };
    let mut builder = O::builder(sliced[0].name().clone(), slice.len());
    per_slice(&slice, &mut builder)?;
    let out = O::finish(builder);
    polars_ensure!(
        out.len() == slice.len(),
        ComputeError: "string adapter: a slice of {} rows gave {} values", slice.len(), out.len()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(n: usize) -> StringChunked {
        let values: Vec<Option<String>> = (0..n)
            .map(|i| (i % 7 != 0).then(|| format!("v{i}")))
            .collect();
        StringChunked::from_iter_options("c".into(), values.iter().map(|v| v.as_deref()))
    }

    fn upper(v: &str, out: &mut String) {
        out.push_str(&v.to_uppercase());
    }

    #[test]
    fn string_output_keeps_nulls_and_order_across_slices() {
        let n = 10 * PARALLEL_MIN + 3;
        let ca = column(n);
        let out = map_str_column(&ca, &upper);
        assert_eq!(out.len(), n);
        assert!(
            out.chunks().len() > 1,
            "a long column is mapped in several slices"
        );
        assert_eq!(out.null_count(), ca.null_count());
        assert_eq!(out.name(), ca.name());
        for (a, b) in ca.iter().zip(out.iter()) {
            assert_eq!(a.map(|v| v.to_uppercase()).as_deref(), b);
        }
    }

    /// Where the engine evaluates without threads (its streaming pipelines), a long column is
    /// mapped in one slice, to the same values; elsewhere in one per engine thread.
    #[test]
    fn no_slices_where_the_engine_runs_without_threads() {
        let n = 10 * PARALLEL_MIN + 3;
        let ca = column(n);
        let threads = polars_core::POOL.current_num_threads();
        let parallel = map_str_column(&ca, &upper);
        let alone = polars_core::POOL.without_threading(|| map_str_column(&ca, &upper));
        assert_eq!(alone.chunks().len(), 1);
        assert_eq!(parallel.chunks().len(), threads.min(20));
        assert!(alone.iter().eq(parallel.iter()));
        assert_eq!(alone.null_count(), ca.null_count());
    }

    #[test]
    fn short_column_is_one_slice() {
        let ca = column(10);
        let out = map_str_column(&ca, &upper);
        assert_eq!(out.chunks().len(), 1);
        assert_eq!(out.get(1), Some("V1"));
        assert_eq!(out.get(0), None);
        let empty = map_str_column(&column(0), &upper);
        assert!(empty.is_empty());
    }

    #[test]
    fn boolean_and_integer_outputs() {
        let n = 3 * PARALLEL_MIN + 1;
        let ca = column(n);
        let cols = std::slice::from_ref(&ca);
        let even = map_columns::<BooleanType>(cols, &|s, out| {
            s.values()
                .for_each(|v| out.append_value(v.is_some_and(|v| v.len() % 2 == 0)));
            Ok(())
        })
        .unwrap();
        let lens = map_columns::<UInt64Type>(cols, &|s, out| {
            s.values()
                .for_each(|v| out.append_option(v.map(|v| v.len() as u64)));
            Ok(())
        })
        .unwrap();
        let flags = map_columns::<Int32Type>(cols, &|s, out| {
            s.values()
                .for_each(|v| out.append_value(i32::from(v.is_some())));
            Ok(())
        })
        .unwrap();
        for (i, v) in ca.iter().enumerate() {
            assert_eq!(even.get(i), Some(v.is_some_and(|v| v.len() % 2 == 0)));
            assert_eq!(lens.get(i), v.map(|v| v.len() as u64));
            assert_eq!(flags.get(i), Some(i32::from(v.is_some())));
        }
        assert_eq!(lens.null_count(), ca.null_count());
    }

    #[test]
    fn context_columns_line_up_with_each_row() {
        let n = 5 * PARALLEL_MIN + 11;
        let ca = column(n);
        let ctx = StringChunked::from_iter_values("k".into(), (0..n).map(|i| format!("k{i}")));
        let out = map_columns::<StringType>(&[ca.clone(), ctx], &|s, out| {
            for (i, v) in s.values().enumerate() {
                let k: Vec<&str> = s.context(i).flatten().collect();
                out.append_option(v.map(|v| format!("{v}:{}", k.join(","))));
            }
            Ok(())
        })
        .unwrap();
        for (i, v) in out.iter().enumerate() {
            assert_eq!(v, ca.get(i).map(|c| format!("{c}:k{i}")).as_deref());
        }
    }

    #[test]
    fn expressions_in_a_frame() {
        let df = df!("t" => [Some("ab"), None, Some("c")], "k" => ["x", "y", "z"]).unwrap();
        let out = df
            .lazy()
            .select([
                map_str::<StringType, _>(col("t"), vec![], |s, out| {
                    s.map_kernel(out, upper);
                    Ok(())
                })
                .alias("up"),
                map_str::<BooleanType, _>(col("t"), vec![col("k")], |s, out| {
                    for (i, v) in s.values().enumerate() {
                        let k = s.context(i).next().flatten();
                        out.append_value(v.is_some() && k != Some("z"));
                    }
                    Ok(())
                })
                .alias("b"),
            ])
            .collect()
            .unwrap();
        let up: Vec<Option<&str>> = out.column("up").unwrap().str().unwrap().iter().collect();
        assert_eq!(up, [Some("AB"), None, Some("C")]);
        let b: Vec<Option<bool>> = out.column("b").unwrap().bool().unwrap().iter().collect();
        assert_eq!(b, [Some(true), Some(false), Some(false)]);
    }
}
