//! `merklog search`: find audit events, newest first, every hit checked by
//! the client library (its inclusion proof into a verified head, its leaf
//! bytes, and that it matches the search) before it is printed.

use std::io::Write;

use merklog_client::json::TreeHeadJson;
use merklog_client::{Client, Escaped, EventHit, VerifiedHead};
use merklog_event::{ActionMatch, Cursor, EventQuery, TimeField};
use serde::Serialize;

use super::emit::{attributes, now_nanos, parse_time};
use super::{print_json, CommandError, CommandResult, LogArgs, OutputArgs};

/// Which time the window and the order use.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeArg {
    /// When the log integrated the event.
    #[default]
    Integrated,
    /// The event's occurred_at.
    Occurred,
}

/// Arguments of `merklog search`.
#[derive(clap::Args, Debug, Clone)]
pub struct SearchArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The window's start, inclusive: RFC 3339, now, or -30s, -5m, -1h, -7d,
    /// -2w (before now).
    #[arg(long)]
    pub since: String,
    /// The window's end, exclusive, in the forms of --since.
    #[arg(long, default_value = "now")]
    pub until: String,
    /// Which time --since, --until and the order use.
    #[arg(long = "time", value_enum, default_value_t = TimeArg::Integrated)]
    pub time: TimeArg,
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub actor_kind: Option<String>,
    /// The exact action.
    #[arg(long, conflicts_with = "action_prefix")]
    pub action: Option<String>,
    /// Actions that start with this text, e.g. "user.".
    #[arg(long)]
    pub action_prefix: Option<String>,
    #[arg(long)]
    pub resource_kind: Option<String>,
    #[arg(long)]
    pub resource_id: Option<String>,
    /// success, failure, denied or unknown.
    #[arg(long)]
    pub outcome: Option<String>,
    #[arg(long)]
    pub origin_service: Option<String>,
    #[arg(long)]
    pub origin_host: Option<String>,
    #[arg(long)]
    pub source_ip: Option<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    #[arg(long)]
    pub event_id: Option<String>,
    /// Events whose attributes contain this JSON object.
    #[arg(long)]
    pub attributes: Option<String>,
    /// Events with this attribute (KEY=VALUE, the value a string);
    /// repeatable, merged over --attributes.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// Print at most this many hits (default 100).
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<u64>,
    /// Follow the cursors to the last hit, up to --max-hits.
    #[arg(long)]
    pub all: bool,
    /// The most hits --all prints; past it, the command says where to go
    /// on from (--cursor).
    #[arg(long, default_value_t = 100_000)]
    pub max_hits: u64,
    /// Go on from this cursor (as a previous search printed it).
    #[arg(long)]
    pub cursor: Option<String>,
    /// One JSON object per hit, one per line.
    #[arg(long, conflicts_with_all = ["csv", "json"])]
    pub jsonl: bool,
    /// Comma-separated values with a header line (RFC 4180).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The JSON output of `merklog search`.
#[derive(Debug, Serialize)]
pub struct SearchOutput {
    pub hits: Vec<HitJson>,
    /// The head of the last page; the hits of earlier pages are proved
    /// against earlier heads, each consistent with the next.
    pub tree_head: Option<TreeHeadJson>,
    /// Where a further search goes on from (--cursor); null after the last
    /// hit.
    pub next_cursor: Option<String>,
}

/// One hit in JSON output.
#[derive(Debug, Serialize)]
pub struct HitJson {
    pub leaf_index: u64,
    #[serde(with = "merklog_client::json::hex_hash")]
    pub leaf_hash: merklog_merkle::Hash,
    pub integrated_ms: u64,
    /// The size of the tree head the hit's inclusion proof verified against.
    pub tree_size: u64,
    pub event: serde_json::Value,
}

impl HitJson {
    fn new(hit: &EventHit) -> Self {
        HitJson {
            leaf_index: hit.proof.leaf_index,
            leaf_hash: hit.proof.leaf_hash,
            integrated_ms: hit.integrated_ms,
            tree_size: hit.proof.tree_size,
            event: hit.stored.event.to_json(),
        }
    }
}

/// Builds the query the arguments describe, with `page_size`.
///
/// # Errors
/// [`CommandError::Usage`] for a malformed time, outcome, IP address,
/// attribute object or cursor.
pub fn query(args: &SearchArgs, now: i64) -> CommandResult<EventQuery> {
    let outcome = args
        .outcome
        .as_deref()
        .map(|o| {
            o.parse()
                .map_err(|e| CommandError::Usage(format!("--outcome: {e}")))
        })
        .transpose()?;
    let source_ip = args
        .source_ip
        .as_deref()
        .map(|ip| {
            ip.parse()
                .map_err(|e| CommandError::Usage(format!("--source-ip {ip:?}: {e}")))
        })
        .transpose()?;
    let cursor = args
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c).map_err(|e| CommandError::Usage(format!("--cursor: {e}"))))
        .transpose()?;
    Ok(EventQuery {
        time_field: match args.time {
            TimeArg::Integrated => TimeField::IntegratedAt,
            TimeArg::Occurred => TimeField::OccurredAt,
        },
        since_nanos: parse_time(&args.since, "--since", now)?,
        until_nanos: parse_time(&args.until, "--until", now)?,
        actor_id: args.actor.clone(),
        actor_kind: args.actor_kind.clone(),
        action: match (&args.action, &args.action_prefix) {
            (Some(a), _) => Some(ActionMatch::Exact(a.clone())),
            (None, Some(p)) => Some(ActionMatch::Prefix(p.clone())),
            (None, None) => None,
        },
        resource_kind: args.resource_kind.clone(),
        resource_id: args.resource_id.clone(),
        outcome,
        origin_service: args.origin_service.clone(),
        origin_host: args.origin_host.clone(),
        source_ip,
        request_id: args.request_id.clone(),
        trace_id: args.trace_id.clone(),
        event_id: args.event_id.clone(),
        attributes_contain: attributes(args.attributes.as_deref(), &args.attrs, "--attributes")?,
        page_size: 100,
        cursor,
    })
}

/// The hits of a search across pages, with the last page's head and where
/// to go on from.
#[derive(Debug)]
pub struct Found {
    pub hits: Vec<EventHit>,
    pub head: Option<VerifiedHead>,
    pub next_cursor: Option<Cursor>,
}

/// Runs `query` page by page until `limit` hits or the last page. Every
/// page is checked by the client library, which also checks each head
/// consistent with the one before, and each page starts at the previous
/// page's cursor, so no hit repeats.
///
/// # Errors
/// The first refusal or failed check.
pub async fn search_all(
    client: &mut Client,
    mut query: EventQuery,
    limit: u64,
) -> CommandResult<Found> {
    let info = client.log_info().await?;
    let page_max = match info.max_events_page_size {
        0 => 100,
        n => u64::from(n),
    };
    let mut found = Found {
        hits: Vec::new(),
        head: None,
        next_cursor: None,
    };
    loop {
        let left = limit - found.hits.len() as u64;
        query.page_size = u32::try_from(left.min(page_max)).unwrap_or(u32::MAX);
        let page = client.search_events(&query).await?;
        found.hits.extend(page.hits);
        found.head = Some(page.head);
        found.next_cursor = page.next_cursor;
        match page.next_cursor {
            Some(cursor) if (found.hits.len() as u64) < limit => query.cursor = Some(cursor),
            _ => return Ok(found),
        }
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The time the query orders by, as RFC 3339.
fn hit_time(query: &EventQuery, hit: &EventHit) -> String {
    let key = query.sort_key(&hit.stored.event, hit.proof.leaf_index, hit.integrated_ms);
    match query.time_field {
        TimeField::OccurredAt => hit.stored.event.occurred_at.text().to_owned(),
        TimeField::IntegratedAt => merklog_proto::events::rfc3339_from_nanos(key.time_nanos),
    }
}

/// Prints the search's hits.
///
/// # Errors
/// When the log refuses the search or a page does not verify; nothing of a
/// page that fails is printed.
pub async fn run(args: SearchArgs, out: &mut dyn Write) -> CommandResult {
    let query = query(&args, now_nanos())?;
    let limit = if args.all {
        args.max_hits
    } else {
        args.limit.unwrap_or(100)
    };
    if limit == 0 {
        return Err(CommandError::Usage("--limit must be at least 1".into()));
    }
    let mut client = args.log.connect().await?;
    let found = search_all(&mut client, query.clone(), limit).await?;
    let cursor = found.next_cursor.map(|c| c.encode());
    if args.all {
        if let Some(c) = &cursor {
            eprintln!(
                "merklog: stopped after {} hits (--max-hits); more match: go on with --cursor {c}",
                found.hits.len()
            );
        }
    }
    if args.out.json {
        return print_json(
            out,
            &SearchOutput {
                hits: found.hits.iter().map(HitJson::new).collect(),
                tree_head: found.head.as_ref().map(VerifiedHead::to_json),
                next_cursor: cursor,
            },
        );
    }
    if args.jsonl {
        for hit in &found.hits {
            let line = serde_json::to_string(&HitJson::new(hit)).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if args.csv {
        writeln!(
            out,
            "leaf_index,integrated_ms,occurred_at,event_id,actor_kind,actor_id,action,\
             resource_kind,resource_id,outcome,submitted_by,leaf_hash"
        )?;
        for hit in &found.hits {
            let e = &hit.stored.event;
            let (rk, ri) = e
                .resource
                .as_ref()
                .map_or((String::new(), String::new()), |r| {
                    (r.kind.clone(), r.id.clone())
                });
            let fields = [
                hit.proof.leaf_index.to_string(),
                hit.integrated_ms.to_string(),
                e.occurred_at.text().to_owned(),
                e.event_id.clone(),
                e.actor.kind.clone(),
                e.actor.id.clone(),
                e.action.clone(),
                rk,
                ri,
                e.outcome.as_str().to_owned(),
                e.submitted_by.clone(),
                hit.proof.leaf_hash.to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            writeln!(out, "{}", line.join(","))?;
        }
        return Ok(());
    }
    // The table: the event's text is the log's, escaped before it reaches
    // the terminal.
    writeln!(
        out,
        "{:<30}  {:>8}  {:<24}  {:<24}  {:<24}  {:<7}  EVENT ID",
        "TIME", "INDEX", "ACTION", "ACTOR", "RESOURCE", "OUTCOME"
    )?;
    for hit in &found.hits {
        let e = &hit.stored.event;
        let actor = format!("{}:{}", e.actor.kind, e.actor.id);
        let resource = e
            .resource
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| format!("{}:{}", r.kind, r.id));
        writeln!(
            out,
            "{:<30}  {:>8}  {:<24}  {:<24}  {:<24}  {:<7}  {}",
            Escaped(&hit_time(&query, hit)).to_string(),
            hit.proof.leaf_index,
            Escaped(&e.action).to_string(),
            Escaped(&actor).to_string(),
            Escaped(&resource).to_string(),
            e.outcome.as_str(),
            Escaped(&e.event_id)
        )?;
    }
    match &found.head {
        Some(head) => writeln!(
            out,
            "{} hits, each proved into a verified tree head (last: size {}, root {})",
            found.hits.len(),
            head.tree_size(),
            head.root_hash()
        )?,
        None => writeln!(out, "0 hits")?,
    }
    if let (Some(c), false) = (&cursor, args.all) {
        writeln!(out, "more match: go on with --cursor {c}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
