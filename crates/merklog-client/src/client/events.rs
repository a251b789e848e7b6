//! Appending and searching audit events, every answer checked: each leaf's
//! bytes hash to its leaf hash and parse as the canonical event leaf, each
//! inclusion proof verifies against a signed head consistent with the
//! trusted one, an appended event is the one sent, and a search hit matches
//! the query, in order, after the cursor.
//!
//! What a client cannot check from one answer: that a search left no
//! matching event out (the log proves what it returns, not what it omits),
//! and a hit's integration time, which the leaf does not carry (a search by
//! occurred time does not depend on it).

use merklog_event::{Cursor, Event, EventInput, EventQuery, SealedEvent};
use merklog_merkle::{leaf_hash, Hash};
use merklog_proto::events::{event_input_to_wire, event_query_to_wire};
use merklog_proto::hash_from_wire;
use merklog_proto::v1;

use super::{checked_inclusion_proof, Client};
use crate::check::VerifiedHead;
use crate::json::InclusionProofJson;
use crate::{ClientError, Result};

/// One appended event, checked: its leaf parses as an event, hashes to its
/// leaf hash and is included in the receipt's head.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendedEvent {
    pub proof: InclusionProofJson,
    /// The event id was in the log already (or earlier in the same call):
    /// `proof.leaf_index` is the original event's leaf, and `stored` the
    /// original event.
    pub duplicate: bool,
    /// The leaf bytes.
    pub entry: Vec<u8>,
    /// The event as the log stores it, with its salt and `submitted_by`.
    pub stored: SealedEvent,
    /// Whether `stored` has every field this call sent (always, unless
    /// `duplicate` and the earlier event with this id said something else).
    pub same_as_sent: bool,
}

/// The checked answer to an event append.
#[derive(Debug, Clone, PartialEq)]
pub struct EventReceipt {
    /// The head that covers every event, consistent with the trusted head.
    pub head: VerifiedHead,
    /// In the order the events were given.
    pub events: Vec<AppendedEvent>,
}

/// One search hit, checked against the query and the page's head.
#[derive(Debug, Clone, PartialEq)]
pub struct EventHit {
    pub proof: InclusionProofJson,
    /// The leaf bytes.
    pub entry: Vec<u8>,
    pub stored: SealedEvent,
    /// When the log integrated the leaf, in ms since the Unix epoch, as the
    /// log says (not covered by the proof).
    pub integrated_ms: u64,
}

/// One checked page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// The one head every hit is proved against.
    pub head: VerifiedHead,
    /// Newest first.
    pub hits: Vec<EventHit>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

/// Reads and checks one leaf the log served as an event: the bytes hash to
/// the claimed leaf hash and parse as a canonical event leaf.
fn checked_leaf(index: u64, claimed: Hash, entry: &[u8]) -> Result<SealedEvent> {
    let computed = leaf_hash(entry);
    if computed != claimed {
        return Err(ClientError::LeafHash {
            leaf_index: index,
            claimed,
            computed,
        });
    }
    SealedEvent::parse(entry).map_err(|e| ClientError::BadEvent {
        leaf_index: index,
        reason: e.to_string(),
    })
}

/// Tells whether `stored` is the event `sent` with the fields the log sets
/// (`submitted_by`, and `event_id` when `sent` had none).
fn same_event(sent: &EventInput, stored: &Event) -> bool {
    if sent
        .event_id
        .as_ref()
        .is_some_and(|id| *id != stored.event_id)
    {
        return false;
    }
    Event::from_input(sent.clone(), &stored.submitted_by, || {
        stored.event_id.clone()
    })
    .is_ok_and(|expected| expected == *stored)
}

impl Client {
    /// Appends `events` and checks the answer: the head is signed and
    /// consistent with the trusted head, and for each event the leaf bytes
    /// hash to the leaf hash, parse as an event leaf, carry the event sent
    /// (for a new event; a duplicate carries the event id sent) and are
    /// included in the head.
    ///
    /// # Errors
    /// [`ClientError::BadEvent`], [`ClientError::EventMismatch`], and the
    /// checks of [`Client::append`]; an INVALID_ARGUMENT status naming the
    /// field of an event the log refuses.
    pub async fn append_events(&mut self, events: Vec<EventInput>) -> Result<EventReceipt> {
        let request = v1::AppendEventsRequest {
            events: events.iter().map(event_input_to_wire).collect(),
        };
        let reply = self.rpc.append_events(request).await?.into_inner();
        let head = self
            .accept_receipt_head(
                reply.tree_head.as_ref(),
                "number of events",
                events.len(),
                reply.events.len(),
            )
            .await?;
        let mut out = Vec::with_capacity(events.len());
        for (i, (got, sent)) in reply.events.into_iter().zip(&events).enumerate() {
            let field = format!("events[{i}]");
            let claimed = hash_from_wire(&got.leaf_hash, &format!("{field}.leaf_hash"))?;
            let stored = checked_leaf(got.leaf_index, claimed, &got.entry)?;
            if stored.event.event_id != got.event_id {
                return Err(ClientError::EventMismatch {
                    leaf_index: got.leaf_index,
                    reason: format!(
                        "{field}.event_id is {:?} but the leaf holds event {:?}",
                        got.event_id, stored.event.event_id
                    ),
                });
            }
            let same_as_sent = same_event(sent, &stored.event);
            let id_differs = sent
                .event_id
                .as_ref()
                .is_some_and(|id| *id != stored.event.event_id);
            if id_differs || (!got.duplicate && !same_as_sent) {
                return Err(ClientError::EventMismatch {
                    leaf_index: got.leaf_index,
                    reason: format!(
                        "{field}: the log stored event {:?}, which is not the event sent",
                        stored.event.event_id
                    ),
                });
            }
            let proof = checked_inclusion_proof(
                &head,
                got.leaf_index,
                claimed,
                &got.inclusion_proof,
                &field,
            )?;
            out.push(AppendedEvent {
                proof,
                duplicate: got.duplicate,
                entry: got.entry,
                stored,
                same_as_sent,
            });
        }
        Ok(EventReceipt { head, events: out })
    }

    /// Asks for one page of `query` and checks it: one signed head,
    /// consistent with the trusted head; each hit's bytes hash to its leaf
    /// hash, parse as an event leaf and are included in that head; each hit
    /// matches the query (its filters, window and cursor); hits come newest
    /// first, strictly, and the next cursor is the last hit's position.
    ///
    /// # Errors
    /// [`ClientError::Input`] for a query that breaks a rule of its own;
    /// [`ClientError::SearchMismatch`] for a hit that does not match, is out
    /// of order or does not end where the cursor says; as
    /// [`Client::append_events`] for the leaves and proofs; an
    /// INVALID_ARGUMENT status naming the field the log refuses.
    pub async fn search_events(&mut self, query: &EventQuery) -> Result<SearchPage> {
        query.validate(i64::MAX).map_err(|e| ClientError::Input {
            what: "search".into(),
            reason: e.to_string(),
        })?;
        let reply = self
            .rpc
            .search_events(event_query_to_wire(query))
            .await?
            .into_inner();
        let wire = reply
            .tree_head
            .as_ref()
            .ok_or_else(|| ClientError::Malformed {
                field: "tree_head".into(),
                reason: "missing".into(),
            })?;
        let head = self.accept_served_head(wire, "tree_head").await?;
        if reply.hits.len() > query.page_size as usize {
            return Err(ClientError::SearchMismatch {
                leaf_index: None,
                reason: format!(
                    "the page holds {} hits, more than the {} asked for",
                    reply.hits.len(),
                    query.page_size
                ),
            });
        }
        let mut hits = Vec::with_capacity(reply.hits.len());
        let mut previous: Option<Cursor> = None;
        for (i, got) in reply.hits.into_iter().enumerate() {
            let field = format!("hits[{i}]");
            let index = got.leaf_index;
            let claimed = hash_from_wire(&got.leaf_hash, &format!("{field}.leaf_hash"))?;
            let stored = checked_leaf(index, claimed, &got.entry)?;
            let proof =
                checked_inclusion_proof(&head, index, claimed, &got.inclusion_proof, &field)?;
            if !query.matches(&stored.event, index, got.integrated_ms) {
                return Err(ClientError::SearchMismatch {
                    leaf_index: Some(index),
                    reason: format!(
                        "event {:?} does not match the query (its filters, time window or cursor)",
                        stored.event.event_id
                    ),
                });
            }
            let key = query.sort_key(&stored.event, index, got.integrated_ms);
            if let Some(before) = previous {
                if (key.time_nanos, key.index) >= (before.time_nanos, before.index) {
                    return Err(ClientError::SearchMismatch {
                        leaf_index: Some(index),
                        reason: "hits are not in strictly descending (time, index) order".into(),
                    });
                }
            }
            previous = Some(key);
            hits.push(EventHit {
                proof,
                entry: got.entry,
                stored,
                integrated_ms: got.integrated_ms,
            });
        }
        let next_cursor = if reply.next_cursor.is_empty() {
            None
        } else {
            let cursor =
                Cursor::decode(&reply.next_cursor).map_err(|e| ClientError::Malformed {
                    field: "next_cursor".into(),
                    reason: e.to_string(),
                })?;
            // A cursor past the last hit would skip events unseen.
            if previous != Some(cursor) {
                return Err(ClientError::SearchMismatch {
                    leaf_index: None,
                    reason: "next_cursor is not the position of the page's last hit".into(),
                });
            }
            Some(cursor)
        };
        Ok(SearchPage {
            head,
            hits,
            next_cursor,
        })
    }
}
