//! Audit events for the load generator: realistic events for `AppendEvents`
//! writers and the prefill, and the searches the event issue sets targets
//! for (one actor over a day, an action prefix over an hour, 100 hits with
//! proofs), with the same sampled verification as every other answer.
//!
//! The events look like a busy organisation's: actors from a pool of
//! `actors` (so a one-day query for one actor finds about `log size /
//! actors` hits), a few dozen dotted actions under a handful of prefixes,
//! outcomes mostly `success`, an origin, a request ID and a small attribute
//! object. The log gives each event its ID (a UUIDv7) and salt.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use merklog_merkle::{leaf_hash, verify_inclusion};
use merklog_proto::hashes_from_wire;
use merklog_proto::v1::log_client::LogClient;
use merklog_proto::v1::{self, SearchEventsRequest};
use merklog_sth::SignedTreeHead;
use rand::rngs::StdRng;
use rand::Rng;
use tonic::transport::Channel;

use crate::load::Shared;

/// Actions, as `prefix.verb`: the prefixes are what action-prefix searches
/// ask for.
const ACTIONS: &[&str] = &[
    "auth.login",
    "auth.logout",
    "auth.mfa.challenge",
    "auth.token.issue",
    "auth.password.change",
    "db.query",
    "db.connect",
    "db.schema.alter",
    "db.export",
    "config.read",
    "config.update",
    "config.delete",
    "user.create",
    "user.delete",
    "user.role.grant",
    "user.role.revoke",
    "file.read",
    "file.write",
    "file.delete",
    "k8s.pod.create",
    "k8s.pod.exec",
    "k8s.secret.get",
    "billing.invoice.view",
    "billing.refund.issue",
];

/// The prefixes of [`ACTIONS`].
pub const ACTION_PREFIXES: &[&str] = &["auth.", "db.", "config.", "user.", "file.", "k8s."];

const RESOURCE_KINDS: &[&str] = &["database", "bucket", "secret", "service", "user", "pod"];
const SERVICES: &[&str] = &["api-gateway", "billing", "identity", "storage", "scheduler"];

/// Which search the search readers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchKind {
    /// One random actor's events of the last 24 hours.
    ActorDay,
    /// Events of the last hour whose action starts with a random prefix.
    ActionPrefixHour,
}

/// A realistic event from actor `user-<n>` or `svc-<n>`, `n < actors`,
/// occurring now.
pub fn random_event(rng: &mut StdRng, actors: u32) -> v1::Event {
    let actor = rng.gen_range(0..actors.max(1));
    // One actor in ten is a service account.
    let (actor_id, actor_kind) = if actor % 10 == 9 {
        (format!("svc-{actor}"), "service")
    } else {
        (format!("user-{actor}"), "user")
    };
    let outcome = match rng.gen_range(0..100) {
        0..=89 => "success",
        90..=95 => "failure",
        96..=98 => "denied",
        _ => "unknown",
    };
    let kind = RESOURCE_KINDS[rng.gen_range(0..RESOURCE_KINDS.len())];
    let service = SERVICES[rng.gen_range(0..SERVICES.len())];
    v1::Event {
        event_id: String::new(),
        occurred_at: now_rfc3339(),
        actor: Some(v1::EventActor {
            id: actor_id,
            kind: actor_kind.to_owned(),
        }),
        action: ACTIONS[rng.gen_range(0..ACTIONS.len())].to_owned(),
        resource: Some(v1::EventResource {
            kind: kind.to_owned(),
            id: format!("{kind}-{}", rng.gen_range(0..5_000)),
        }),
        outcome: outcome.to_owned(),
        origin: Some(v1::EventOrigin {
            service: Some(service.to_owned()),
            host: Some(format!("{service}-{}.prod.internal", rng.gen_range(0..16))),
            source_ip: Some(format!(
                "10.{}.{}.{}",
                rng.gen_range(0..256),
                rng.gen_range(0..256),
                rng.gen_range(1..255)
            )),
        }),
        request_id: Some(format!("{:032x}", rng.gen::<u128>())),
        trace_id: None,
        attributes: format!(
            r#"{{"client":"merklog-bench/1","latency_ms":{},"bytes":{}}}"#,
            rng.gen_range(1..2_000),
            rng.gen_range(0..1_000_000)
        ),
        submitted_by: String::new(),
    }
}

fn now_rfc3339() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    merklog_event::format_rfc3339(nanos, 9)
}

/// `now - back` as RFC 3339.
fn ago_rfc3339(back: Duration) -> String {
    let nanos = SystemTime::now()
        .checked_sub(back)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    merklog_event::format_rfc3339(nanos, 9)
}

/// `count` random events.
pub fn random_events(rng: &mut StdRng, count: usize, actors: u32) -> Vec<v1::Event> {
    (0..count).map(|_| random_event(rng, actors)).collect()
}

/// Checks an `AppendEvents` answer: one new event per event sent, each
/// inside the head; with `full`, the head's signature, each leaf hash
/// against the leaf bytes returned and each inclusion proof. Returns the
/// head when it was checked, and the leaf bytes answered (for the mean
/// event size).
pub fn check_append_events(
    shared: &Shared,
    full: bool,
    count: usize,
    resp: &v1::AppendEventsResponse,
) -> Result<(Option<SignedTreeHead>, u64), String> {
    if resp.events.len() != count {
        return Err(format!(
            "{count} events sent, {} answered",
            resp.events.len()
        ));
    }
    if let Some(e) = resp.events.iter().find(|e| e.duplicate) {
        return Err(format!(
            "a new event at {} reported as a duplicate",
            e.leaf_index
        ));
    }
    let head_size = resp.tree_head.as_ref().map_or(0, |h| h.tree_size);
    if let Some(e) = resp.events.iter().find(|e| e.leaf_index >= head_size) {
        return Err(format!(
            "event {} outside the returned head of size {head_size}",
            e.leaf_index
        ));
    }
    let bytes = resp.events.iter().map(|e| e.entry.len() as u64).sum();
    if !full {
        return Ok((None, bytes));
    }
    let head = shared.check_head(resp.tree_head.as_ref(), "tree_head")?;
    for (i, e) in resp.events.iter().enumerate() {
        check_leaf(
            &head,
            e.leaf_index,
            &e.leaf_hash,
            &e.entry,
            &e.inclusion_proof,
        )
        .map_err(|m| format!("events[{i}]: {m}"))?;
    }
    Ok((Some(head), bytes))
}

/// Checks that `entry` hashes to `wire_hash` and that `proof` leads from it
/// to `head`'s root.
fn check_leaf(
    head: &SignedTreeHead,
    index: u64,
    wire_hash: &[u8],
    entry: &[u8],
    proof: &[Vec<u8>],
) -> Result<(), String> {
    let hash = leaf_hash(entry);
    if wire_hash != &hash.0[..] {
        return Err(format!(
            "leaf {index}: leaf hash is not SHA-256(0x00 || entry)"
        ));
    }
    let proof = hashes_from_wire(proof, "inclusion_proof").map_err(|e| e.to_string())?;
    verify_inclusion(
        index,
        head.head.tree_size,
        &hash,
        &proof,
        &head.head.root_hash,
    )
    .map_err(|e| format!("leaf {index} in {}: {e}", head.head.tree_size))
}

/// Runs one search of `kind` for 100 hits; returns the hits. With `full`,
/// checks the head's signature and every hit's leaf hash and proof.
pub async fn search(
    client: &mut LogClient<Channel>,
    shared: &Arc<Shared>,
    rng: &mut StdRng,
    kind: SearchKind,
    actors: u32,
    full: bool,
) -> Result<u64, crate::load::Failure> {
    let mut request = SearchEventsRequest {
        page_size: 100,
        until: ago_rfc3339(Duration::ZERO),
        ..SearchEventsRequest::default()
    };
    match kind {
        SearchKind::ActorDay => {
            let actor = rng.gen_range(0..actors.max(1));
            request.since = ago_rfc3339(Duration::from_secs(24 * 3600));
            request.actor_id = Some(if actor % 10 == 9 {
                format!("svc-{actor}")
            } else {
                format!("user-{actor}")
            });
        }
        SearchKind::ActionPrefixHour => {
            request.since = ago_rfc3339(Duration::from_secs(3600));
            request.action_prefix =
                Some(ACTION_PREFIXES[rng.gen_range(0..ACTION_PREFIXES.len())].to_owned());
        }
    }
    let resp = client
        .search_events(shared.request(request))
        .await?
        .into_inner();
    let head_size = resp.tree_head.as_ref().map_or(0, |h| h.tree_size);
    if let Some(h) = resp.hits.iter().find(|h| h.leaf_index >= head_size) {
        return Err(crate::load::Failure::Wrong(format!(
            "hit {} outside the returned head of size {head_size}",
            h.leaf_index
        )));
    }
    if full {
        let check = || -> Result<(), String> {
            let head = shared.check_head(resp.tree_head.as_ref(), "tree_head")?;
            for h in &resp.hits {
                check_leaf(
                    &head,
                    h.leaf_index,
                    &h.leaf_hash,
                    &h.entry,
                    &h.inclusion_proof,
                )?;
            }
            Ok(())
        };
        check().map_err(crate::load::Failure::Wrong)?;
    }
    Ok(resp.hits.len() as u64)
}
