//! Audit events as the store keeps them: the searchable row written beside
//! each event leaf, what a look-up and a search return, and the translation
//! of an [`EventQuery`] into SQL that both backends share.
//!
//! The `events` table is an index over the event leaves, not evidence: a
//! search returns the leaves themselves ([`EventHit::entry`]), which the
//! client re-checks with [`EventQuery::matches`] and an inclusion proof.

use merklog_event::{jcs, ActionMatch, Event, EventQuery, TimeField};
use merklog_merkle::Hash;
use serde_json::Value;

use crate::batch::{from_i64, hash_from_db};
use crate::Result;

/// A stored event found by its id: the index and hash of its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEventRef {
    pub event_id: String,
    pub index: u64,
    pub leaf_hash: Hash,
}

/// One search hit: the event's leaf as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHit {
    pub index: u64,
    pub leaf_hash: Hash,
    /// The leaf's entry, [`merklog_event::SealedEvent::parse`] reads it.
    pub entry: Vec<u8>,
    /// When the leaf was integrated, in milliseconds since the Unix epoch.
    pub integrated_ms: u64,
}

/// The `events` row of one event leaf, taken from the event when the leaf is
/// made so that it always describes that leaf's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventRow {
    pub event_id: String,
    pub occurred_ns: i64,
    pub actor_id: String,
    pub actor_kind: String,
    pub action: String,
    pub resource_kind: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: &'static str,
    pub origin_service: Option<String>,
    pub origin_host: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// The attributes object as RFC 8785 canonical JSON (`{}` when empty).
    pub attributes: String,
}

impl EventRow {
    pub(crate) fn of(event: &Event) -> EventRow {
        let attributes = Value::Object(event.attributes.clone());
        // A validated event's attributes always canonicalize (its leaf is
        // their canonical form); plain JSON is the same object should one
        // not, and both backends parse either.
        let attributes = jcs::to_canonical(&attributes)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_else(|| attributes.to_string());
        EventRow {
            event_id: event.event_id.clone(),
            occurred_ns: event.occurred_at.unix_nanos(),
            actor_id: event.actor.id.clone(),
            actor_kind: event.actor.kind.clone(),
            action: event.action.clone(),
            resource_kind: event.resource.as_ref().map(|r| r.kind.clone()),
            resource_id: event.resource.as_ref().map(|r| r.id.clone()),
            outcome: event.outcome.as_str(),
            origin_service: event.origin.service.clone(),
            origin_host: event.origin.host.clone(),
            source_ip: event.origin.source_ip.map(|ip| ip.to_string()),
            request_id: event.request_id.clone(),
            trace_id: event.trace_id.clone(),
            attributes,
        }
    }
}

/// The columns of `events` in the order both backends insert them.
pub(crate) const EVENT_COLUMNS: &str = "idx, event_id, occurred_ns, integrated_ms, actor_id, \
     actor_kind, action, resource_kind, resource_id, outcome, origin_service, origin_host, \
     source_ip, request_id, trace_id, attributes";

/// How a backend writes bind placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `$1`, `$2`, …; attribute containment with `@>`.
    Postgres,
    /// `?`; attributes re-checked in Rust (no containment operator).
    Sqlite,
}

/// A value bound to a search statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
}

/// A search statement and its binds.
///
/// It selects `idx, t, leaf_hash, entry, integrated_ms` (`t` the sort time
/// in the column's unit) of the matching events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SearchSql {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// A keyset position in the units of the time column: rows strictly before
/// `(time, idx)` in (time DESC, idx DESC) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct After {
    pub time: i64,
    pub idx: i64,
}

const NANOS_PER_MS: i128 = 1_000_000;

fn ceil_div(a: i128, b: i128) -> i128 {
    -(-a).div_euclid(b)
}

/// Saturates to the `BIGINT` range: every stored time and index lies inside
/// it, so a bound past it selects the same rows as the end of the range.
fn saturate(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The time column a query orders by and its window `[lo, hi)` in that
/// column's unit.
///
/// Integration time is stored in milliseconds and compared as
/// `ms · 1,000,000` ns: `ms · 10⁶ ≥ since ⇔ ms ≥ ⌈since / 10⁶⌉` and
/// `ms · 10⁶ < until ⇔ ms < ⌈until / 10⁶⌉`, so the bounds are converted
/// rather than the column multiplied (which no index serves).
fn window(query: &EventQuery) -> (&'static str, i64, i64) {
    let (since, until) = (i128::from(query.since_nanos), i128::from(query.until_nanos));
    match query.time_field {
        TimeField::OccurredAt => ("e.occurred_ns", query.since_nanos, query.until_nanos),
        TimeField::IntegratedAt => (
            "e.integrated_ms",
            saturate(ceil_div(since, NANOS_PER_MS)),
            saturate(ceil_div(until, NANOS_PER_MS)),
        ),
    }
}

/// The query's cursor as a keyset position in the time column's unit.
///
/// Leaf indices are at most `i64::MAX − 1` (below a tree size that fits
/// `BIGINT`), so `idx < i64::MAX` holds for every row: a cursor index past
/// it means "every index". For integration time, `(ms · 10⁶, idx) <
/// (t, i)` is `(ms, idx) < (t / 10⁶, i)` when `t` is a whole millisecond,
/// and `ms ≤ ⌊t / 10⁶⌋` (every index) otherwise.
pub(crate) fn cursor_after(query: &EventQuery) -> Option<After> {
    let cursor = query.cursor?;
    let idx = i64::try_from(cursor.index).unwrap_or(i64::MAX);
    Some(match query.time_field {
        TimeField::OccurredAt => After {
            time: cursor.time_nanos,
            idx,
        },
        TimeField::IntegratedAt => {
            let t = i128::from(cursor.time_nanos);
            let ms = t.div_euclid(NANOS_PER_MS);
            let whole = t.rem_euclid(NANOS_PER_MS) == 0;
            After {
                time: saturate(ms),
                idx: if whole { idx } else { i64::MAX },
            }
        }
    })
}

/// The smallest string greater than every string that starts with
/// `prefix`, in code point order (which is the byte order of UTF-8, the
/// order of PostgreSQL's `C` collation and SQLite's `BINARY`); `None` when
/// there is none (an empty prefix, or one of `char::MAX` only).
///
/// `action >= prefix AND action < upper` is then exactly "starts with
/// `prefix`", as a range that a B-tree reads.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `prefix` as a LIKE pattern (escape character `\`) matching the strings
/// that start with it: `%`, `_` and `\` in it stand for themselves.
pub(crate) fn like_prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Whether the statement [`search_sql`] builds for `dialect` selects exactly
/// the matching events, or a superset that the caller narrows with
/// [`EventQuery::matches`] (SQLite with an attribute filter).
pub(crate) fn needs_recheck(query: &EventQuery, dialect: Dialect) -> bool {
    dialect == Dialect::Sqlite && query.attributes_contain.is_some()
}

/// Builds the statement of one page: the events among leaves
/// `[0, tree_size)` that match `query` (all its filters but, on SQLite, the
/// attributes), before `after` (the query's own cursor, or where the
/// previous read stopped), newest first, at most `limit` rows. `None` when
/// nothing can match: an empty window or an empty tree.
pub(crate) fn search_sql(
    query: &EventQuery,
    tree_size: u64,
    after: Option<After>,
    limit: u32,
    dialect: Dialect,
) -> Option<SearchSql> {
    let (time, lo, hi) = window(query);
    if lo >= hi || tree_size == 0 || limit == 0 {
        return None;
    }
    let mut binds: Vec<Bind> = Vec::new();
    let mut next = |bind: Bind| {
        binds.push(bind);
        match dialect {
            Dialect::Postgres => format!("${}", binds.len()),
            Dialect::Sqlite => "?".to_owned(),
        }
    };
    let mut terms: Vec<String> = Vec::new();
    terms.push(format!("{time} >= {}", next(Bind::Int(lo))));
    terms.push(format!("{time} < {}", next(Bind::Int(hi))));
    if let Some(after) = after {
        terms.push(format!(
            "({time}, e.idx) < ({}, {})",
            next(Bind::Int(after.time)),
            next(Bind::Int(after.idx))
        ));
    }
    let size = i64::try_from(tree_size).unwrap_or(i64::MAX);
    terms.push(format!("e.idx < {}", next(Bind::Int(size))));

    let text_filters: [(&str, Option<&String>); 10] = [
        ("e.event_id", query.event_id.as_ref()),
        ("e.actor_id", query.actor_id.as_ref()),
        ("e.actor_kind", query.actor_kind.as_ref()),
        ("e.resource_kind", query.resource_kind.as_ref()),
        ("e.resource_id", query.resource_id.as_ref()),
        ("e.origin_service", query.origin_service.as_ref()),
        ("e.origin_host", query.origin_host.as_ref()),
        ("e.request_id", query.request_id.as_ref()),
        ("e.trace_id", query.trace_id.as_ref()),
        (
            "e.action",
            match &query.action {
                Some(ActionMatch::Exact(action)) => Some(action),
                _ => None,
            },
        ),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            terms.push(format!("{column} = {}", next(Bind::Text(value.clone()))));
        }
    }
    if let Some(outcome) = query.outcome {
        terms.push(format!(
            "e.outcome = {}",
            next(Bind::Text(outcome.as_str().to_owned()))
        ));
    }
    if let Some(ip) = query.source_ip {
        // Stored as Rust writes the address (Event::to_json does too).
        terms.push(format!(
            "e.source_ip = {}",
            next(Bind::Text(ip.to_string()))
        ));
    }
    if let Some(ActionMatch::Prefix(prefix)) = &query.action {
        if !prefix.is_empty() {
            // The range is what the action index reads (a generic plan of a
            // LIKE with a bound pattern reads no index range); on
            // PostgreSQL the LIKE then states the filter as issue 21 words
            // it. SQLite's LIKE ignores ASCII case, so the range alone is
            // the filter there.
            terms.push(format!("e.action >= {}", next(Bind::Text(prefix.clone()))));
            if let Some(upper) = prefix_upper_bound(prefix) {
                terms.push(format!("e.action < {}", next(Bind::Text(upper))));
            }
            if dialect == Dialect::Postgres {
                terms.push(format!(
                    "e.action LIKE {} ESCAPE '\\'",
                    next(Bind::Text(like_prefix_pattern(prefix)))
                ));
            }
        }
    }
    if let (Some(contain), Dialect::Postgres) = (&query.attributes_contain, dialect) {
        let json = Value::Object(contain.clone()).to_string();
        terms.push(format!("e.attributes @> {}::jsonb", next(Bind::Text(json))));
    }
    let limit = next(Bind::Int(i64::from(limit)));
    // Integration times never go back as the index grows (the store's time
    // order, migration 10), so (integrated_ms DESC, idx DESC) is idx DESC:
    // ordered so, a page walks the primary key backwards and stops at
    // `limit` matches, where the time order made PostgreSQL sort every
    // match of the window (an action prefix over an hour of a 1,000,000-
    // event log: 320 ms against 0.8 ms; docs/BENCHMARKS.md, round 7).
    let order = match query.time_field {
        TimeField::IntegratedAt => "e.idx DESC".to_owned(),
        TimeField::OccurredAt => format!("{time} DESC, e.idx DESC"),
    };
    // The page is chosen from `events` alone and only its rows are joined
    // to their leaves: a plan that joined every candidate before sorting
    // them read 55,000 leaves for a page of 50 (docs/STORAGE.md, "Events").
    let sql = format!(
        "SELECT p.idx, p.t, l.leaf_hash, l.entry, l.integrated_ms \
         FROM (SELECT e.idx, {time} AS t FROM events e WHERE {} \
               ORDER BY {order} LIMIT {limit}) AS p \
         JOIN leaves l ON l.idx = p.idx ORDER BY p.t DESC, p.idx DESC",
        terms.join(" AND ")
    );
    Some(SearchSql { sql, binds })
}

/// Reads one `(idx, t, leaf_hash, entry, integrated_ms)` search row.
pub(crate) fn hit_from_row(
    (idx, _, hash, entry, ms): (i64, i64, Vec<u8>, Vec<u8>, i64),
) -> Result<EventHit> {
    Ok(EventHit {
        index: from_i64(idx, "idx")?,
        leaf_hash: hash_from_db(&hash, "leaf_hash")?,
        entry,
        integrated_ms: from_i64(ms, "integrated_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_event::Cursor;

    fn query(time_field: TimeField) -> EventQuery {
        EventQuery {
            page_size: 10,
            ..EventQuery::window(time_field, 0, 10_000_000_000)
        }
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_strings() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("db."), Some("db/".to_owned()));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}"),
            Some("a\u{E000}".to_owned())
        );
        assert_eq!(
            prefix_upper_bound("a\u{10FFFF}\u{10FFFF}"),
            Some("b".to_owned())
        );
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let upper = prefix_upper_bound("auth.").unwrap();
        for s in ["auth.", "auth.login", "auth.\u{10FFFF}"] {
            assert!(s >= "auth." && s < upper.as_str(), "{s}");
        }
        for s in ["auth", "auth/", "autg.z", "b"] {
            assert!(!(s >= "auth." && s < upper.as_str()), "{s}");
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix_pattern("db_x%"), "db\\_x\\%%");
        assert_eq!(like_prefix_pattern("a\\b"), "a\\\\b%");
        assert_eq!(like_prefix_pattern(""), "%");
    }

    #[test]
    fn integration_time_bounds_are_whole_milliseconds() {
        let mut q = query(TimeField::IntegratedAt);
        q.since_nanos = 1_500_000; // ms 1.5 -> first whole ms is 2
        q.until_nanos = 3_000_000; // exclusive: ms < 3
        assert_eq!(window(&q), ("e.integrated_ms", 2, 3));
        q.since_nanos = -1;
        q.until_nanos = 3_000_001; // ms 3 is 3,000,000 ns < until
        assert_eq!(window(&q), ("e.integrated_ms", 0, 4));
        q.since_nanos = i64::MIN;
        q.until_nanos = i64::MAX;
        let (_, lo, hi) = window(&q);
        assert_eq!((lo, hi), (i64::MIN / 1_000_000, i64::MAX / 1_000_000 + 1));
    }

    #[test]
    fn cursors_in_milliseconds_keep_the_order_of_nanoseconds() {
        let mut q = query(TimeField::IntegratedAt);
        q.cursor = Some(Cursor {
            time_nanos: 7_000_000,
            index: 5,
        });
        assert_eq!(cursor_after(&q), Some(After { time: 7, idx: 5 }));
        q.cursor = Some(Cursor {
            time_nanos: 7_000_001,
            index: 5,
        });
        assert_eq!(
            cursor_after(&q),
            Some(After {
                time: 7,
                idx: i64::MAX
            })
        );
        let mut q = query(TimeField::OccurredAt);
        q.cursor = Some(Cursor {
            time_nanos: -3,
            index: u64::MAX,
        });
        assert_eq!(
            cursor_after(&q),
            Some(After {
                time: -3,
                idx: i64::MAX
            })
        );
    }

    #[test]
    fn statements_bind_every_filter() {
        let mut q = query(TimeField::OccurredAt);
        q.actor_id = Some("alice".into());
        q.action = Some(ActionMatch::Prefix("db_".into()));
        q.attributes_contain = Some(serde_json::from_str(r#"{"a":1}"#).unwrap());
        let pg = search_sql(&q, 10, None, 5, Dialect::Postgres).unwrap();
        assert!(pg.sql.contains("e.actor_id = $4"), "{}", pg.sql);
        assert!(pg.sql.contains("e.action LIKE $7 ESCAPE"), "{}", pg.sql);
        assert!(pg.sql.contains("e.attributes @> $8::jsonb"), "{}", pg.sql);
        assert!(pg.sql.contains("LIMIT $9)"), "{}", pg.sql);
        assert_eq!(pg.binds[6], Bind::Text("db\\_%".into()));
        let lite = search_sql(&q, 10, None, 5, Dialect::Sqlite).unwrap();
        assert!(!lite.sql.contains("LIKE") && !lite.sql.contains("attributes"));
        assert_eq!(lite.binds.len(), 7);
        assert!(needs_recheck(&q, Dialect::Sqlite) && !needs_recheck(&q, Dialect::Postgres));

        assert_eq!(search_sql(&q, 0, None, 5, Dialect::Sqlite), None);
        q.until_nanos = q.since_nanos;
        assert_eq!(search_sql(&q, 10, None, 5, Dialect::Sqlite), None);
    }

    #[test]
    fn integration_time_pages_walk_the_index_backwards() {
        let by_occurrence = search_sql(
            &query(TimeField::OccurredAt),
            10,
            None,
            5,
            Dialect::Postgres,
        );
        assert!(by_occurrence
            .unwrap()
            .sql
            .contains("ORDER BY e.occurred_ns DESC, e.idx DESC LIMIT"));
        let by_integration = search_sql(
            &query(TimeField::IntegratedAt),
            10,
            None,
            5,
            Dialect::Postgres,
        );
        assert!(by_integration
            .unwrap()
            .sql
            .contains("ORDER BY e.idx DESC LIMIT"));
    }
}
