//! The text stage on polars: scan and rewrite string columns in parallel slices.
//!
//! Each `redact` column becomes one expression over the text and the row's identifier columns
//! (for contextual detection). The scanning and rewriting are the plain kernels of
//! [`crate::pii::detect`] and [`crate::pii::redact`] (one [`TextRewriter`] per slice, holding the reused
//! context, span list and output buffer, so a text without a hit is copied to the output
//! without any allocation); the engine's one adapter ([`crate::engine::polars::adapter`])
//! walks the columns, a slice per thread.

use std::sync::Arc;

use polars::prelude::*;

use super::adapter::map_str;
use crate::pii::detect::Scanner;
use crate::pii::redact::{TextPolicy, TextRewriter, TextStats, TokenFn};
use privprep_kernels::surrogate::SurrogateWriter;

/// Everything one text column needs at run time; shared by every thread.
pub struct TextRuntime {
    pub column: String,
    pub scanner: Scanner,
    pub policy: TextPolicy,
    pub stats: Arc<TextStats>,
    pub token: Option<Arc<TokenFn>>,
    /// For `surrogate` hits.
    pub surrogate: Option<SurrogateWriter>,
}

/// The rewritten text column (`text` must already be null where the row is not kept).
pub fn redact_expr(rt: Arc<TextRuntime>, text: Expr, context: Vec<Expr>) -> Expr {
    let name = rt.column.clone();
    map_str::<StringType, _>(text, context, move |s, out| {
        let mut rewriter = TextRewriter::new(&rt.scanner, &rt.policy, rt.token.as_deref())
            .with_surrogates(rt.surrogate.as_ref());
        for (i, v) in s.values().enumerate() {
            out.append_option(rewriter.rewrite_row(v, s.context(i)));
        }
        rewriter.add_to(&rt.stats);
        Ok(())
    })
    .alias(name.as_str())
}

/// True for rows whose text has a hit of a `drop_row` detector.
pub fn drop_expr(rt: Arc<TextRuntime>, text: Expr, context: Vec<Expr>) -> Expr {
    map_str::<BooleanType, _>(text, context, move |s, out| {
        let mut rewriter = TextRewriter::new(&rt.scanner, &rt.policy, None);
        let mut dropped = 0u64;
        for (i, v) in s.values().enumerate() {
            let hit = rewriter.drop_row(v, s.context(i));
            dropped += u64::from(hit == Some(true));
            out.append_option(hit);
        }
        rt.stats
            .rows_dropped
            .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })
}
