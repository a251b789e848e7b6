//! The client side of the `merklog` command, as a library so that the
//! end-to-end tests can run each command in process: `append`, `sth`,
//! `entries`, `prove`, `verify`, `monitor`, `audit` and `verify-store`.
//!
//! `serve` and `keygen` live with the binary (`main.rs`).

pub mod client;
