//! The client side of the `merklog` command, as a library so that the
//! end-to-end tests can run each command in process: `append`, `sth`,
//! `entries`, `prove`, `verify`, `monitor`, `audit` and `verify-store`.
//!
//! `serve` and `keygen` live with the binary (`main.rs`).
//!
//! Long commands (`append` of many entries, `export`) draw progress bars
//! with `indicatif`, the common Rust crate for terminal progress bars: it
//! redraws one line in place, rate-limits its redraws and draws nothing to
//! a stream that is not a terminal. [`client::progress`] decides when a bar
//! is shown at all: only on a terminal's stderr and never with `--json`.

pub mod client;
