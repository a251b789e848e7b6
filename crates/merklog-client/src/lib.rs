//! A merklog client that trusts nothing.
//!
//! Every value it returns has been checked first: a tree head's signature
//! against a pinned public key and its log ID, each inclusion proof against
//! a verified head, each entry's bytes against its leaf hash, and every new
//! head against the last head the client trusted, through a consistency proof
//! (RFC 9162 §2.1.4). A check that fails is an error, never a value.
//!
//! - [`Client`]: the online client over the gRPC API, with the trusted head
//!   kept in memory and, optionally, in a state file ([`TrustState`]).
//! - [`check`]: the checks themselves, pure, shared with the offline tools.
//! - [`offline`]: checking saved documents with a public key and no server.
//! - [`json`]: the documents of `docs/FORMATS.md`.
//! - [`window`]: time windows proved complete (export bundles) and the time
//!   rule that bounds each entry's integration time by signed heads.
//! - [`private_file`]: writing a file only its owner may read, atomically
//!   (the state file here; `merklog keygen`'s key file).
//!
//! It does not read the log's database (that is `merklog verify-store`), and
//! it does not choose what to do about a failure: it reports it, with the
//! evidence, in [`ClientError`].

pub mod check;
mod client;
mod clock;
mod error;
mod export;
pub mod json;
pub mod offline;
pub mod private_file;
mod state;
pub mod window;

pub use check::{verify_head, VerifiedHead, DEFAULT_MAX_CLOCK_SKEW};
pub use client::{
    unpinned_log_info, AppendReceipt, AppendedEntry, AppendedEvent, Client, ClientOptions,
    ClientTls, EventHit, EventReceipt, HeadsFrom, LogEntry, LogInfo, ProvenConsistency,
    ProvenInclusion, SearchPage, ServedEntry, StateFileCheck,
};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{ClientError, Escaped, Result};
pub use export::export_window;
pub use state::TrustState;
