//! Personal data inside free text: the scanner, its validators and phone plans, and redaction.
//!
//! Free text (tickets, chats, prompts) is where personal data hides in training sets. This
//! module finds it in one pass per text ([`detect`], with the checks in [`validators`] and the
//! numbering plans in [`phone`]) and replaces each hit as the pipeline says ([`redact`]). All of
//! it works on one `&str` at a time and depends on nothing outside this module, so every
//! engine finds and replaces exactly the same spans.

mod cues;
pub mod detect;
mod person;
pub mod phone;
pub mod redact;
pub mod validators;

pub use detect::{CustomDetector, Kind, RowContext, Scanner, ScannerConfig, Span, Validator};
pub use redact::{TextAction, TextPolicy, TextRewriter, TextStats};
