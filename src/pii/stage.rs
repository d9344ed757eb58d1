//! The free-text stage on the engine: scan and rewrite string columns in parallel slices.
//!
//! Each `redact` column becomes one expression over the text and the row's identifier columns
//! (for contextual detection). The scanning and rewriting are the plain kernels of
//! [`super::detect`] and [`super::redact`] (one [`TextRewriter`] per slice, holding the reused
//! context, span list and output buffer, so a text without a hit is copied to the output
//! without any allocation); this file only walks engine chunks, a slice per thread.

use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;

use super::detect::Scanner;
use super::redact::{TextPolicy, TextRewriter, TextStats, TokenFn};

/// Everything one text column needs at run time; shared by every thread.
pub struct TextRuntime {
    pub column: String,
    pub scanner: Scanner,
    pub policy: TextPolicy,
    pub stats: TextStats,
    pub token: Option<Arc<TokenFn>>,
}

/// Below this many rows a batch is processed on the calling thread.
const PARALLEL_MIN: usize = 4 * 1024;

/// The rewritten text column (`text` must already be null where the row is not kept).
pub fn redact_expr(rt: Arc<TextRuntime>, text: Expr, context: Vec<Expr>) -> Expr {
    let name = rt.column.clone();
    text.cast(DataType::String)
        .map_many(
            move |cols: &mut [Column]| {
                let (text, ctx) = string_columns(cols)?;
                let mut parts =
                    in_parallel(&text, &ctx, |t, c| rewrite_slice(&rt, t, c))?.into_iter();
                let mut out = parts.next().unwrap_or_else(|| text.clone());
                for p in parts {
                    out.append(&p)?;
                }
                Ok(out.into_column())
            },
            &context_exprs(context),
            |_, fields| Ok(Field::new(fields[0].name().clone(), DataType::String)),
        )
        .alias(name.as_str())
}

/// True for rows whose text has a hit of a `drop_row` detector.
pub fn drop_expr(rt: Arc<TextRuntime>, text: Expr, context: Vec<Expr>) -> Expr {
    text.cast(DataType::String).map_many(
        move |cols: &mut [Column]| {
            let (text, ctx) = string_columns(cols)?;
            let mut parts = in_parallel(&text, &ctx, |t, c| Ok(drop_slice(&rt, t, c)))?.into_iter();
            let mut out = parts
                .next()
                .unwrap_or_else(|| BooleanChunked::full_null(text.name().clone(), 0));
            for p in parts {
                out.append(&p)?;
            }
            Ok(out.into_column())
        },
        &context_exprs(context),
        |_, fields| Ok(Field::new(fields[0].name().clone(), DataType::Boolean)),
    )
}

fn context_exprs(context: Vec<Expr>) -> Vec<Expr> {
    context
        .into_iter()
        .map(|e| e.cast(DataType::String))
        .collect()
}

fn string_columns(cols: &[Column]) -> PolarsResult<(StringChunked, Vec<StringChunked>)> {
    let text = cols[0].str()?.clone();
    let ctx = cols[1..]
        .iter()
        .map(|c| c.str().cloned())
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok((text, ctx))
}

/// Runs `f` over equal slices of the text and context columns; the results are in order.
fn in_parallel<T: Send>(
    text: &StringChunked,
    ctx: &[StringChunked],
    f: impl Fn(&StringChunked, &[StringChunked]) -> PolarsResult<T> + Sync,
) -> PolarsResult<Vec<T>> {
    let n = text.len();
    if n < PARALLEL_MIN {
        return Ok(vec![f(text, ctx)?]);
    }
    let parts = rayon::current_num_threads().clamp(1, n / (PARALLEL_MIN / 2));
    let step = n.div_ceil(parts);
    let pieces = (0..parts)
        .into_par_iter()
        .map(|i| {
            let (off, len) = ((i * step) as i64, step);
            let c: Vec<StringChunked> = ctx.iter().map(|c| c.slice(off, len)).collect();
            f(&text.slice(off, len), &c)
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok(pieces)
}

/// Row `i`'s identifier values, for [`TextRewriter::set_context`].
fn row_context<'a>(
    columns: &'a [Vec<Option<&'a str>>],
    i: usize,
) -> impl Iterator<Item = Option<&'a str>> + 'a {
    columns.iter().map(move |c| c.get(i).copied().flatten())
}

fn rewrite_slice(
    rt: &TextRuntime,
    text: &StringChunked,
    ctx_cols: &[StringChunked],
) -> PolarsResult<StringChunked> {
    // One pointer per value, per slice: the values themselves are not copied.
    let columns: Vec<Vec<Option<&str>>> = ctx_cols.iter().map(|c| c.iter().collect()).collect();
    let mut builder = StringChunkedBuilder::new(text.name().clone(), text.len());
    let mut rewriter = TextRewriter::new(&rt.scanner, &rt.policy, rt.token.as_deref());
    for (i, v) in text.iter().enumerate() {
        builder.append_option(rewriter.rewrite_row(v, row_context(&columns, i)));
    }
    rewriter.add_to(&rt.stats);
    Ok(builder.finish())
}

fn drop_slice(
    rt: &TextRuntime,
    text: &StringChunked,
    ctx_cols: &[StringChunked],
) -> BooleanChunked {
    let columns: Vec<Vec<Option<&str>>> = ctx_cols.iter().map(|c| c.iter().collect()).collect();
    let mut rewriter = TextRewriter::new(&rt.scanner, &rt.policy, None);
    let out: BooleanChunked = text
        .iter()
        .enumerate()
        .map(|(i, v)| rewriter.drop_row(v, row_context(&columns, i)))
        .collect();
    let n = out.sum().unwrap_or(0) as u64;
    rt.stats
        .rows_dropped
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    out.with_name(text.name().clone())
}
