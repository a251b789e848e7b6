//! `AppendEvents` and `SearchEvents`: typed audit events over the same
//! sequencer, store and proofs as opaque entries.
//!
//! An event is validated and sealed here (event id, salt, `submitted_by`),
//! appended through the sequencer, which answers an event id the log holds
//! already with the original leaf, and searched through the store's event
//! index, every hit proved against one signed head.

use merklog_event::limits::{MAX_EVENTS_PER_APPEND, MAX_PAGE_SIZE};
use merklog_event::{Event, EventError, EventQuery, SealedEvent, SALT_LEN};
use merklog_merkle::{leaf_hash, Hash};
use merklog_proto::events::{event_input_from_wire, event_query_from_wire};
use merklog_proto::v1;
use merklog_proto::{hashes_to_wire, ConversionError};
use merklog_storage::LogStore;
use rand_core::RngCore;

use super::LogService;
use crate::config::PROOF_ANSWER_BYTES;
use crate::status::ServiceError;

/// The `submitted_by` of events appended where the access rules let anyone
/// append (no rules configured): there is no principal to name.
pub const ANONYMOUS_SUBMITTER: &str = "anonymous";

/// The longest `[since, until)` window a search may ask for unless the
/// service is given another ([`LogService::with_max_search_window`]): one
/// year and a day, so that "the last year" is one search.
pub const DEFAULT_MAX_SEARCH_WINDOW: std::time::Duration =
    std::time::Duration::from_secs(366 * 24 * 3600);

fn conversion(e: ConversionError) -> ServiceError {
    match e {
        ConversionError::Invalid { field, reason } => ServiceError::invalid(field, reason),
        ConversionError::Missing { field } => ServiceError::invalid(field, "required"),
        ConversionError::HashLength { field, got } => {
            ServiceError::invalid(field, format!("a hash is 32 bytes, got {got}"))
        }
    }
}

/// An event rule broken at `prefix` (e.g. `events[2]`).
fn event_invalid(prefix: &str, e: EventError) -> ServiceError {
    match e {
        EventError::Invalid { field, problem } => {
            let field = if prefix.is_empty() {
                field
            } else {
                format!("{prefix}.{field}")
            };
            ServiceError::invalid(field, problem)
        }
        EventError::NotAnEventLeaf(reason) => ServiceError::invalid(prefix, reason),
    }
}

impl<S: LogStore + Send + Sync + 'static> LogService<S> {
    /// The most events one `AppendEvents` call may carry.
    pub(super) fn max_events_per_append(&self) -> usize {
        self.limits
            .max_entries_per_append
            .min(MAX_EVENTS_PER_APPEND)
    }

    /// The most hits one `SearchEvents` page may hold.
    pub(super) fn max_events_page_size(&self) -> u32 {
        u32::try_from(self.limits.max_page_size)
            .unwrap_or(u32::MAX)
            .min(MAX_PAGE_SIZE)
    }

    /// Validates and seals the events of `req` for `submitted_by`.
    fn seal_events(
        &self,
        req: &v1::AppendEventsRequest,
        submitted_by: &str,
    ) -> Result<Vec<SealedEvent>, ServiceError> {
        let max = self.max_events_per_append();
        if req.events.is_empty() {
            return Err(ServiceError::invalid(
                "events",
                "at least one event is required",
            ));
        }
        if req.events.len() > max {
            return Err(ServiceError::invalid(
                "events",
                format!(
                    "{} events in one call; at most {max} are allowed",
                    req.events.len()
                ),
            ));
        }
        let mut rng = rand_core::OsRng;
        req.events
            .iter()
            .enumerate()
            .map(|(i, wire)| {
                let field = format!("events[{i}]");
                let input = event_input_from_wire(wire, &field).map_err(conversion)?;
                let event = Event::from_input(input, submitted_by, || {
                    let mut random = [0u8; 10];
                    rng.fill_bytes(&mut random);
                    merklog_event::uuid_v7(self.clock.now_ms(), random)
                })
                .map_err(|e| event_invalid(&field, e))?;
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                let sealed = SealedEvent { salt, event };
                let size = sealed.entry().len();
                if size > self.limits.max_entry_bytes {
                    return Err(ServiceError::invalid(
                        field,
                        format!(
                            "the event's leaf is {size} bytes; this log takes entries of at \
                             most {} bytes",
                            self.limits.max_entry_bytes
                        ),
                    ));
                }
                Ok(sealed)
            })
            .collect()
    }

    /// Appends the events of `req` as `submitted_by` and answers with each
    /// one's leaf, entry bytes and inclusion proof against one head.
    pub(super) async fn append_event_batch(
        &self,
        req: v1::AppendEventsRequest,
        submitted_by: &str,
    ) -> Result<v1::AppendEventsResponse, ServiceError> {
        let sealed = self.seal_events(&req, submitted_by)?;
        let sequencer = self.role.borrow().sequencer()?;
        let committed = sequencer.append_events(&sealed).await?;
        let stored_note = |m: String| {
            ServiceError::Unavailable(format!(
                "{m}; the events were stored (tree size {}) but their proofs could not be \
                 read: appending them again with the same event_id returns their indexes \
                 and proofs",
                committed.tree_head.head.tree_size
            ))
        };
        let proofs = committed
            .proofs(self.store.as_ref())
            .await
            .map_err(|e| match e {
                ServiceError::Unavailable(m) => stored_note(m),
                other => other,
            })?;
        let mut events = Vec::with_capacity(sealed.len());
        for ((event, placement), proof) in sealed.iter().zip(&committed.placements).zip(proofs) {
            // A duplicate's leaf is the original event's, stored before
            // this call or earlier in it: its bytes come from the store.
            let entry = if placement.duplicate {
                let mut read = self
                    .checked_entries(placement.index, placement.index + 1)
                    .await
                    .map_err(|e| match e {
                        ServiceError::Unavailable(m) => stored_note(m),
                        other => other,
                    })?;
                read.pop()
                    .ok_or_else(|| {
                        ServiceError::DataLoss(format!(
                            "leaf {} is missing from the store",
                            placement.index
                        ))
                    })?
                    .entry
            } else {
                event.entry()
            };
            events.push(v1::AppendedEvent {
                leaf_index: placement.index,
                leaf_hash: placement.leaf_hash.0.to_vec(),
                inclusion_proof: hashes_to_wire(&proof),
                duplicate: placement.duplicate,
                event_id: event.event.event_id.clone(),
                entry,
            });
        }
        Ok(v1::AppendEventsResponse {
            events,
            tree_head: Some(self.wire_sth(&committed.tree_head)),
        })
    }

    /// Reads and validates a search request.
    fn search_query(&self, req: &v1::SearchEventsRequest) -> Result<EventQuery, ServiceError> {
        let query = event_query_from_wire(req).map_err(conversion)?;
        let max = self.max_events_page_size();
        if query.page_size > max {
            return Err(ServiceError::invalid(
                "page_size",
                format!("{} hits asked; at most {max} per page", query.page_size),
            ));
        }
        let window = i64::try_from(self.max_search_window.as_nanos()).unwrap_or(i64::MAX);
        query.validate(window).map_err(|e| event_invalid("", e))?;
        Ok(query)
    }

    /// Answers one page of a search, every hit proved against the latest
    /// signed head.
    pub(super) async fn search_event_page(
        &self,
        req: v1::SearchEventsRequest,
    ) -> Result<v1::SearchEventsResponse, ServiceError> {
        let query = self.search_query(&req)?;
        let head = self.latest()?;
        let size = head.head.tree_size;
        let mut hits = self.store.search_events(&query, size).await?;
        let full = hits.len() >= query.page_size as usize;
        // A page is also cut where its entries and proofs would pass
        // max_response_bytes (keeping at least one hit), as a GetEntries
        // page is; the caller goes on from the cursor.
        let mut room = self.limits.max_response_bytes;
        let mut keep = 0;
        for hit in &hits {
            let cost = hit.entry.len() + PROOF_ANSWER_BYTES;
            if keep > 0 && cost > room {
                break;
            }
            room = room.saturating_sub(cost);
            keep += 1;
        }
        let cut = keep < hits.len();
        hits.truncate(keep);
        for hit in &hits {
            if hit.index >= size {
                return Err(ServiceError::DataLoss(format!(
                    "the event index returned leaf {} outside tree size {size}",
                    hit.index
                )));
            }
            if leaf_hash(&hit.entry) != hit.leaf_hash {
                return Err(ServiceError::DataLoss(format!(
                    "the stored entry at index {} does not match its leaf hash",
                    hit.index
                )));
            }
        }
        let leaves: Vec<(u64, Option<Hash>)> =
            hits.iter().map(|h| (h.index, Some(h.leaf_hash))).collect();
        let proofs = if leaves.is_empty() {
            Vec::new()
        } else {
            self.inclusion_proofs(&leaves, size).await?
        };
        let next_cursor = match hits.last() {
            Some(last) if full || cut => {
                let sealed = SealedEvent::parse(&last.entry).map_err(|e| {
                    ServiceError::DataLoss(format!(
                        "the event index points at leaf {}, which is not an event leaf: {e}",
                        last.index
                    ))
                })?;
                query
                    .sort_key(&sealed.event, last.index, last.integrated_ms)
                    .encode()
            }
            _ => String::new(),
        };
        Ok(v1::SearchEventsResponse {
            hits: hits
                .into_iter()
                .zip(proofs)
                .map(|(hit, proof)| v1::EventHit {
                    leaf_index: hit.index,
                    leaf_hash: hit.leaf_hash.0.to_vec(),
                    entry: hit.entry,
                    integrated_ms: hit.integrated_ms,
                    inclusion_proof: proof.proof,
                })
                .collect(),
            tree_head: Some(self.wire_sth(&head)),
            next_cursor,
        })
    }
}
