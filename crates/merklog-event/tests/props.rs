//! Property tests: the canonical bytes and the leaf hash do not depend on
//! how the input JSON was written, and leaves round-trip.

use merklog_event::jcs::to_canonical;
use merklog_event::{Event, EventInput, SealedEvent};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// JSON values of the kinds attributes hold: numbers within ±(2^53−1),
/// strings with any characters (controls, quotes, astral planes).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite and within 2^53", |f| f.is_finite()
                && f.abs() < 9.0e15)
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        any::<String>().prop_map(Value::String),
        r#"[a-z"\\\x00-\x1fé€😀]{0,8}"#.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_é😀\u{ff61}]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_.]{1,8}", json_value(), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

/// Writes `v` as JSON with object members in an order given by `seed` and
/// whitespace between tokens, the way a careless producer might.
fn render(v: &Value, seed: u64, out: &mut String) {
    let ws = [" ", "\n  ", "\t", ""][(seed % 4) as usize];
    match v {
        Value::Object(m) => {
            let mut members: Vec<_> = m.iter().collect();
            let len = members.len().max(1);
            members.rotate_left((seed as usize) % len);
            if seed.is_multiple_of(3) {
                members.reverse();
            }
            out.push('{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(ws);
                out.push(':');
                out.push_str(ws);
                render(item, seed.wrapping_mul(31).wrapping_add(i as u64), out);
            }
            out.push_str(ws);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    out.push_str(ws);
                }
                render(item, seed.wrapping_add(7), out);
            }
            out.push(']');
        }
        // serde_json writes \u escapes for controls and its own number form:
        // both differ from the canonical text, which is the point.
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

fn event_input() -> impl Strategy<Value = EventInput> {
    let text = "[a-zA-Z0-9 ._:/@é-]{1,20}";
    (
        (
            prop::option::of("[!-~]{1,40}"),
            (0i64..4_102_444_800, 0u32..1_000_000_000, prop::bool::ANY),
            (text, text),
            "[a-z0-9_-]{1,8}(\\.[a-z0-9_-]{1,8}){0,3}",
            prop::option::of((text, text)),
        ),
        (
            prop::sample::select(vec!["success", "failure", "denied", "unknown"]),
            prop::option::of((
                prop::option::of(text),
                prop::option::of(text),
                prop::option::of(prop::sample::select(vec![
                    "192.0.2.7",
                    "2001:db8::7",
                    "::ffff:10.0.0.1",
                ])),
            )),
            prop::option::of(text),
            prop::option::of("[0-9a-f]{32}"),
            prop::option::of(attributes()),
        ),
    )
        .prop_map(
            |(
                (event_id, (secs, nanos, frac), actor, action, resource),
                (outcome, origin, request_id, trace_id, attrs),
            )| {
                EventInput {
                    event_id,
                    occurred_at: rfc3339(secs, nanos, frac),
                    actor: merklog_event::ActorInput {
                        id: actor.0,
                        kind: actor.1,
                    },
                    action,
                    resource: resource.map(|(kind, id)| merklog_event::ResourceInput { kind, id }),
                    outcome: outcome.into(),
                    origin: origin.map(|(service, host, ip)| merklog_event::OriginInput {
                        service,
                        host,
                        source_ip: ip.map(Into::into),
                    }),
                    request_id,
                    trace_id,
                    attributes: attrs.map(Value::Object),
                }
            },
        )
}

/// Formats seconds since 1970 as RFC 3339 UTC by the civil-from-days
/// algorithm, independently of the crate's parser.
fn rfc3339(secs: i64, nanos: u32, frac: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if frac {
        format!("{base}.{nanos:09}Z")
    } else {
        format!("{base}Z")
    }
}

fn event_input_json(input: &EventInput) -> Value {
    serde_json::to_value(input).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn key_order_and_whitespace_do_not_change_canonical_bytes(v in json_value(), seed in any::<u64>()) {
        let canonical = to_canonical(&v).unwrap();
        let mut text = String::new();
        render(&v, seed, &mut text);
        let reread: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(to_canonical(&reread).unwrap(), canonical.clone());
        let pretty: Value = serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        prop_assert_eq!(to_canonical(&pretty).unwrap(), canonical.clone());
        // Canonical text is a fixed point.
        let again: Value = serde_json::from_slice(&canonical).unwrap();
        prop_assert_eq!(to_canonical(&again).unwrap(), canonical);
    }

    #[test]
    fn every_double_reads_back_from_its_canonical_text(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        prop_assume!(f.is_finite());
        let text = String::from_utf8(to_canonical(&Value::Number(Number::from_f64(f).unwrap())).unwrap()).unwrap();
        prop_assert_eq!(text.parse::<f64>().unwrap(), f);
        prop_assert!(!text.contains('E') && !text.ends_with(".0") && !text.starts_with('+'));
    }

    #[test]
    fn leaf_hash_does_not_depend_on_how_the_input_was_written(input in event_input(), salt in any::<[u8; 32]>(), seed in any::<u64>()) {
        let event = Event::from_input(input.clone(), "svc:ingest", || "generated-id".into()).unwrap();
        let sealed = SealedEvent { salt, event };
        let mut text = String::new();
        render(&event_input_json(&input), seed, &mut text);
        let reread = EventInput::from_json(text.as_bytes()).unwrap();
        let event2 = Event::from_input(reread, "svc:ingest", || "generated-id".into()).unwrap();
        let sealed2 = SealedEvent { salt, event: event2 };
        prop_assert_eq!(sealed2.entry(), sealed.entry());
        prop_assert_eq!(sealed2.leaf_hash(), sealed.leaf_hash());
    }

    #[test]
    fn parse_round_trips_entry(input in event_input(), salt in any::<[u8; 32]>()) {
        let event = Event::from_input(input, "user:alice", || "0193e8d2-4d5a-7b6c-8d9e-0f1a2b3c4d5e".into()).unwrap();
        let sealed = SealedEvent { salt, event };
        let entry = sealed.entry();
        prop_assert!(merklog_event::is_event_entry(&entry));
        let parsed = SealedEvent::parse(&entry).unwrap();
        prop_assert_eq!(&parsed, &sealed);
        prop_assert_eq!(parsed.entry(), entry);
    }

    #[test]
    fn parse_refuses_any_single_byte_change(input in event_input(), salt in any::<[u8; 32]>(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let sealed = SealedEvent { salt, event: Event::from_input(input, "user:alice", || "id-1".into()).unwrap() };
        let mut entry = sealed.entry();
        let i = at.index(entry.len());
        prop_assume!(entry[i] != to);
        entry[i] = to;
        if let Ok(other) = SealedEvent::parse(&entry) {
            // Only a change that still yields the canonical form of another
            // event may parse, and then it is that other event.
            prop_assert_eq!(other.entry(), entry);
            prop_assert_ne!(other, sealed);
        }
    }
}
