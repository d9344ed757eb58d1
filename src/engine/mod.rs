//! The engine layer: lowering a stage's plan onto the engine that runs it.
//!
//! Polars today ([`polars`]). The kernels (`privprep-kernels`) do the per-value work and know no
//! engine; this layer only walks the engine's columns and hands values to them, so a token or a
//! redaction is byte for byte the same whichever engine ran it.

pub mod polars;
