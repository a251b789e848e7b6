//! `merklog emit`: append audit events and check the log's receipt.
//!
//! One event from flags, or events from a file (`--file F`, `-` for
//! stdin): a JSON object, or JSON Lines (one object per line), each with
//! the keys of docs/EVENTS.md. Times take RFC 3339 or the relative forms of
//! [`parse_time`].

use std::io::{Read, Write};
use std::path::PathBuf;

use merklog_client::json::{InclusionProofJson, TreeHeadJson};
use merklog_client::{Client, EventReceipt};
use merklog_event::{ActorInput, EventInput, OriginInput, ResourceInput};
use serde::Serialize;

use super::{print_head, print_json, CommandError, CommandResult, LogArgs, OutputArgs};

/// Arguments of `merklog emit`.
#[derive(clap::Args, Debug, Clone)]
pub struct EmitArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Read events from this file (`-` for stdin): one JSON object, or JSON
    /// Lines. Not with the event flags below.
    #[arg(long = "file", short = 'f')]
    pub file: Option<PathBuf>,
    /// Who acted (actor.id).
    #[arg(long)]
    pub actor: Option<String>,
    /// What kind of actor (actor.kind).
    #[arg(long, default_value = "user")]
    pub actor_kind: String,
    /// What was done, e.g. user.login.
    #[arg(long)]
    pub action: Option<String>,
    /// What kind of thing it was done to (needs --resource-id).
    #[arg(long, requires = "resource_id")]
    pub resource_kind: Option<String>,
    /// Which thing it was done to (needs --resource-kind).
    #[arg(long, requires = "resource_kind")]
    pub resource_id: Option<String>,
    /// success, failure, denied or unknown.
    #[arg(long, default_value = "success")]
    pub outcome: String,
    /// When it happened: RFC 3339, or now, -30s, -5m, -1h, -7d (default:
    /// now).
    #[arg(long)]
    pub occurred_at: Option<String>,
    /// An attribute, key=value (the value as a string); repeatable, and
    /// merged over --attributes.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    pub attrs: Vec<String>,
    /// The attributes as a JSON object.
    #[arg(long)]
    pub attributes: Option<String>,
    /// The event's id (default: the log generates a UUIDv7). An id the log
    /// holds already is answered with the original event.
    #[arg(long)]
    pub event_id: Option<String>,
    #[arg(long)]
    pub request_id: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    /// origin.service
    #[arg(long)]
    pub origin_service: Option<String>,
    /// origin.host
    #[arg(long)]
    pub origin_host: Option<String>,
    /// origin.source_ip (IPv4 or IPv6)
    #[arg(long)]
    pub source_ip: Option<String>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The JSON output of `merklog emit`.
#[derive(Debug, Serialize)]
pub struct EmitOutput {
    /// In the order given; each proof is against the head of its call.
    pub events: Vec<EmittedJson>,
    /// The head of the last call.
    pub tree_head: TreeHeadJson,
    /// The head of each call, in order.
    pub tree_heads: Vec<TreeHeadJson>,
}

/// One appended event in the JSON output.
#[derive(Debug, Serialize)]
pub struct EmittedJson {
    pub leaf_index: u64,
    #[serde(with = "merklog_client::json::hex_hash")]
    pub leaf_hash: merklog_merkle::Hash,
    pub event_id: String,
    pub submitted_by: String,
    pub duplicate: bool,
    /// False when `duplicate` and the event stored earlier under this id
    /// differs from the one given now.
    pub same_as_sent: bool,
    pub inclusion_proof: InclusionProofJson,
}

impl EmitOutput {
    /// Returns the output for the receipts of one or more calls.
    ///
    /// # Panics
    /// When `receipts` is empty.
    pub fn new(receipts: &[EventReceipt]) -> Self {
        let last = receipts.last().expect("at least one call");
        EmitOutput {
            events: receipts
                .iter()
                .flat_map(|r| &r.events)
                .map(|e| EmittedJson {
                    leaf_index: e.proof.leaf_index,
                    leaf_hash: e.proof.leaf_hash,
                    event_id: e.stored.event.event_id.clone(),
                    submitted_by: e.stored.event.submitted_by.clone(),
                    duplicate: e.duplicate,
                    same_as_sent: e.same_as_sent,
                    inclusion_proof: e.proof.clone(),
                })
                .collect(),
            tree_head: last.head.to_json(),
            tree_heads: receipts.iter().map(|r| r.head.to_json()).collect(),
        }
    }
}

/// Returns the nanoseconds since the Unix epoch of `text`: RFC 3339 (with
/// an offset), `now`, or a time before now as `-N` followed by `s`, `m`,
/// `h`, `d` or `w` (seconds, minutes, hours, days, weeks): `-90s`, `-1h`,
/// `-7d`.
///
/// # Errors
/// [`CommandError::Usage`] naming `flag` and the forms it takes.
pub fn parse_time(text: &str, flag: &str, now_nanos: i64) -> CommandResult<i64> {
    let usage = || {
        CommandError::Usage(format!(
            "{flag} {text:?}: give an RFC 3339 time (2026-12-03T10:00:00Z), now, or a time \
             before now such as -30s, -5m, -1h, -7d, -2w"
        ))
    };
    let text = text.trim();
    if text == "now" {
        return Ok(now_nanos);
    }
    if let Some(rest) = text.strip_prefix('-') {
        let (digits, unit) = rest.split_at(rest.len().saturating_sub(1));
        let n: i64 = digits.parse().map_err(|_| usage())?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(usage()),
        };
        return n
            .checked_mul(secs)
            .and_then(|s| s.checked_mul(1_000_000_000))
            .and_then(|d| now_nanos.checked_sub(d))
            .ok_or_else(usage);
    }
    merklog_event::OccurredAt::parse(text)
        .map(|t| t.unix_nanos())
        .map_err(|e| CommandError::Usage(format!("{flag} {text:?}: {e}")))
}

/// Returns the time now in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `key=value` flags into a JSON object, over `base` (a JSON
/// object as text) when given.
///
/// # Errors
/// [`CommandError::Usage`] for a flag without `=` or a base that is not a
/// JSON object.
pub fn attributes(
    base: Option<&str>,
    pairs: &[String],
    flag: &str,
) -> CommandResult<Option<serde_json::Map<String, serde_json::Value>>> {
    let mut map = match base {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(CommandError::Usage(format!(
                    "{flag}: give a JSON object, e.g. '{{\"mfa\":true}}'"
                )))
            }
        },
    };
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| CommandError::Usage(format!("--attr {pair:?}: give KEY=VALUE")))?;
        map.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    Ok((base.is_some() || !pairs.is_empty()).then_some(map))
}

/// Builds the one event the flags describe.
fn event_from_flags(args: &EmitArgs, now: i64) -> CommandResult<EventInput> {
    let actor = args
        .actor
        .clone()
        .ok_or_else(|| CommandError::Usage("give --actor and --action, or --file".into()))?;
    let action = args
        .action
        .clone()
        .ok_or_else(|| CommandError::Usage("give --actor and --action, or --file".into()))?;
    let occurred_at = match args.occurred_at.as_deref() {
        // An RFC 3339 time is kept as written; the log keeps its text.
        Some(t) if merklog_event::OccurredAt::parse(t).is_ok() => t.to_owned(),
        Some(t) => merklog_proto::events::rfc3339_from_nanos(parse_time(t, "--occurred-at", now)?),
        None => merklog_proto::events::rfc3339_from_nanos(now),
    };
    let origin =
        (args.origin_service.is_some() || args.origin_host.is_some() || args.source_ip.is_some())
            .then(|| OriginInput {
                service: args.origin_service.clone(),
                host: args.origin_host.clone(),
                source_ip: args.source_ip.clone(),
            });
    Ok(EventInput {
        event_id: args.event_id.clone(),
        occurred_at,
        actor: ActorInput {
            id: actor,
            kind: args.actor_kind.clone(),
        },
        action,
        resource: match (&args.resource_kind, &args.resource_id) {
            (Some(kind), Some(id)) => Some(ResourceInput {
                kind: kind.clone(),
                id: id.clone(),
            }),
            _ => None,
        },
        outcome: args.outcome.clone(),
        origin,
        request_id: args.request_id.clone(),
        trace_id: args.trace_id.clone(),
        attributes: attributes(args.attributes.as_deref(), &args.attrs, "--attributes")?
            .map(serde_json::Value::Object),
    })
}

/// Reads events from `text`: one JSON object (which may span lines), or
/// JSON Lines. `name` names the input in errors.
///
/// # Errors
/// [`CommandError::Usage`] naming the line of an event that does not parse.
pub fn events_from_text(text: &[u8], name: &str) -> CommandResult<Vec<EventInput>> {
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(text) {
        let event =
            EventInput::from_json(text).map_err(|e| CommandError::Usage(format!("{name}: {e}")))?;
        return Ok(vec![event]);
    }
    let mut events = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = EventInput::from_json(line)
            .map_err(|e| CommandError::Usage(format!("{name}, line {}: {e}", i + 1)))?;
        events.push(event);
    }
    if events.is_empty() {
        return Err(CommandError::Usage(format!("{name}: no events")));
    }
    Ok(events)
}

/// Collects the events the arguments name.
///
/// # Errors
/// [`CommandError::Usage`] when the file cannot be read or parsed, when
/// both a file and event flags are given, or when neither is.
pub fn collect_events(args: &EmitArgs, stdin: &mut dyn Read) -> CommandResult<Vec<EventInput>> {
    let Some(path) = &args.file else {
        return Ok(vec![event_from_flags(args, now_nanos())?]);
    };
    if args.actor.is_some() || args.action.is_some() {
        return Err(CommandError::Usage(
            "give the event with flags (--actor, --action, ...) or in --file, not both".into(),
        ));
    }
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        stdin.read_to_end(&mut buf)?;
        events_from_text(&buf, "stdin")
    } else {
        let buf = std::fs::read(path)
            .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", path.display())))?;
        events_from_text(&buf, &path.display().to_string())
    }
}

/// Appends `events` in as many calls as the log's limits need (count and
/// request bytes), each receipt checked and each head consistent with the
/// one before.
///
/// # Errors
/// The first refusal or failed check.
pub async fn emit_all(
    client: &mut Client,
    events: Vec<EventInput>,
) -> CommandResult<Vec<EventReceipt>> {
    let info = client.log_info().await?;
    let per_call = match info.max_events_per_append {
        0 => 1000,
        n => n as usize,
    };
    // The wire form is about as large as the JSON form; half the bound
    // leaves room for framing.
    let byte_bound = match info.max_request_bytes {
        0 => 4 << 20,
        n => (n / 2) as usize,
    };
    let mut receipts = Vec::new();
    let mut call: Vec<EventInput> = Vec::new();
    let mut bytes = 0;
    for event in events {
        let size = serde_json::to_vec(&event).map_or(0, |v| v.len()) + 64;
        if !call.is_empty() && (call.len() == per_call || bytes + size > byte_bound) {
            receipts.push(client.append_events(std::mem::take(&mut call)).await?);
            bytes = 0;
        }
        bytes += size;
        call.push(event);
    }
    if !call.is_empty() {
        receipts.push(client.append_events(call).await?);
    }
    Ok(receipts)
}

/// Appends the events and prints the verified receipts.
///
/// # Errors
/// When the log refuses an event or its receipt does not verify.
pub async fn run(args: EmitArgs, out: &mut dyn Write) -> CommandResult {
    run_with_input(args, &mut std::io::stdin().lock(), out).await
}

/// Runs `merklog emit` reading `-` from `stdin`.
///
/// # Errors
/// As [`run`].
pub async fn run_with_input(
    args: EmitArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> CommandResult {
    let events = collect_events(&args, stdin)?;
    let mut client = args.log.connect().await?;
    let receipts = emit_all(&mut client, events).await?;
    if args.out.json {
        return print_json(out, &EmitOutput::new(&receipts));
    }
    for receipt in &receipts {
        for e in &receipt.events {
            let note = match (e.duplicate, e.same_as_sent) {
                (false, _) => "",
                (true, true) => "  (already in the log)",
                (true, false) => "  (this event id is in the log with OTHER content)",
            };
            writeln!(
                out,
                "index {}  event {}  leaf hash {}  inclusion proof verified at size {}{note}",
                e.proof.leaf_index,
                merklog_client::Escaped(&e.stored.event.event_id),
                e.proof.leaf_hash,
                e.proof.tree_size
            )?;
        }
    }
    if let Some(last) = receipts.last() {
        print_head(out, &last.head)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_times() {
        let now = 1_000_000 * 1_000_000_000;
        assert_eq!(parse_time("now", "--since", now).unwrap(), now);
        assert_eq!(
            parse_time("-1h", "--since", now).unwrap(),
            now - 3600 * 1_000_000_000
        );
        assert_eq!(
            parse_time("-7d", "--since", now).unwrap(),
            now - 7 * 86_400 * 1_000_000_000
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z", "--since", now).unwrap(),
            1_000_000_000
        );
        for bad in ["-1y", "-h", "yesterday", "-"] {
            let err = parse_time(bad, "--since", now).unwrap_err().to_string();
            assert!(err.starts_with("--since"), "{err}");
        }
    }

    #[test]
    fn files_hold_one_object_or_json_lines() {
        let one = br#"{
            "occurred_at": "2026-12-03T10:00:00Z",
            "actor": {"id": "a", "kind": "user"}, "action": "x", "outcome": "success"
        }"#;
        assert_eq!(events_from_text(one, "f").unwrap().len(), 1);
        let lines = b"{\"occurred_at\":\"2026-12-03T10:00:00Z\",\"actor\":{\"id\":\"a\",\"kind\":\"user\"},\"action\":\"x\",\"outcome\":\"success\"}\n\n{\"occurred_at\":\"2026-12-03T10:00:00Z\",\"actor\":{\"id\":\"b\",\"kind\":\"user\"},\"action\":\"y\",\"outcome\":\"denied\"}\n";
        assert_eq!(events_from_text(lines, "f").unwrap().len(), 2);
        let err = events_from_text(b"{\"actor\":1}\n{}\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f, line 1: "), "{err}");
    }

    #[test]
    fn attr_flags_merge_over_the_attributes_object() {
        let map = attributes(Some(r#"{"a":1,"b":2}"#), &["b=x".into()], "--attributes")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(map),
            serde_json::json!({"a":1,"b":"x"})
        );
        assert!(attributes(None, &[], "--attributes").unwrap().is_none());
        assert!(attributes(Some("[1]"), &[], "--attributes").is_err());
        assert!(attributes(None, &["novalue".into()], "--attributes").is_err());
    }
}
