//! The polars engine: the string-kernel adapter every stage uses to map a kernel over a column.

pub mod adapter;
