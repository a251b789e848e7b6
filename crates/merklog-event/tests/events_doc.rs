//! Checks the worked example in docs/EVENTS.md byte for byte, so the document
//! cannot drift from the code: the input, salt and submitter are read from
//! the document, and the leaf bytes and leaf hash it shows must be what this
//! crate computes.

use merklog_event::{Event, EventInput, SealedEvent, SALT_LEN};

const DOC: &str = include_str!("../../../docs/EVENTS.md");

/// Returns the body of the fenced block that follows `<!-- example:NAME -->`,
/// without the fence lines and without the final line feed.
fn block(name: &str) -> String {
    let marker = format!("<!-- example:{name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/EVENTS.md lacks {marker}"));
    let mut lines = DOC[start + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap();
    assert!(
        fence.starts_with("```"),
        "{marker} is not followed by a fenced block"
    );
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    body.join("\n")
}

fn param(params: &str, key: &str) -> String {
    params
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("example:params lacks {key}"))
        .trim()
        .to_owned()
}

#[test]
fn worked_example_in_events_md_is_what_the_code_computes() {
    let input = EventInput::from_json(block("input").as_bytes()).unwrap();
    let params = block("params");
    let submitted_by = param(&params, "submitted_by:");
    let salt_hex = param(&params, "salt (hex):");
    let salt: [u8; SALT_LEN] = hex::decode(salt_hex).unwrap().try_into().unwrap();

    let event = Event::from_input(input, &submitted_by, || {
        unreachable!("the example has an id")
    })
    .unwrap();
    let sealed = SealedEvent { salt, event };

    let entry = sealed.entry();
    assert_eq!(String::from_utf8(entry.clone()).unwrap(), block("entry"));
    assert_eq!(entry.len(), 527, "the document states the length");
    assert_eq!(sealed.leaf_hash().to_string(), block("leaf-hash"));
    assert_eq!(
        sealed.event.occurred_at.unix_nanos(),
        1_796_303_109_250_000_000,
        "the document states the instant"
    );
    assert!(DOC.contains("1796303109250000000 ns"));
    assert_eq!(SealedEvent::parse(&entry).unwrap(), sealed);
}
