//! `merklog emit` and `merklog search` as a user runs them, on the embedded
//! SQLite store: events from flags, a file and stdin; every output format of
//! a search.

mod client_common;

use client_common::{signer, text, Log, Scratch};
use merklog_cli::client::emit::{self, EmitArgs};
use merklog_cli::client::search::{self, SearchArgs, TimeArg};
use merklog_cli::client::OutputArgs;
use merklog_tests::TestDb;

fn emit_args(log: &Log, scratch: &Scratch) -> EmitArgs {
    EmitArgs {
        log: log.args(scratch, Some(scratch.path("state.json"))),
        file: None,
        actor: None,
        actor_kind: "user".into(),
        action: None,
        resource_kind: None,
        resource_id: None,
        outcome: "success".into(),
        occurred_at: None,
        attrs: vec![],
        attributes: None,
        event_id: None,
        request_id: None,
        trace_id: None,
        origin_service: None,
        origin_host: None,
        source_ip: None,
        out: text(),
    }
}

fn search_args(log: &Log, scratch: &Scratch) -> SearchArgs {
    SearchArgs {
        log: log.args(scratch, Some(scratch.path("state.json"))),
        since: "-1h".into(),
        until: "now".into(),
        time: TimeArg::Integrated,
        actor: None,
        actor_kind: None,
        action: None,
        action_prefix: None,
        resource_kind: None,
        resource_id: None,
        outcome: None,
        origin_service: None,
        origin_host: None,
        source_ip: None,
        request_id: None,
        trace_id: None,
        event_id: None,
        attributes: None,
        attrs: vec![],
        limit: None,
        all: false,
        max_hits: 100_000,
        cursor: None,
        jsonl: false,
        csv: false,
        out: text(),
    }
}

async fn run_search(args: SearchArgs) -> String {
    let mut out = Vec::new();
    search::run(args, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn cli_emits_from_flags_files_and_stdin_and_searches_in_every_format() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    let scratch = Scratch::new();

    // From flags, as text.
    let mut args = emit_args(&log, &scratch);
    args.actor = Some("alice".into());
    args.action = Some("user.login".into());
    args.resource_kind = Some("account".into());
    args.resource_id = Some("42".into());
    args.attrs = vec!["mfa=yes".into()];
    args.event_id = Some("evt-flags".into());
    args.trace_id = Some("t-1".into());
    args.occurred_at = Some("2026-12-03T09:55:00.25Z".into());
    let mut out = Vec::new();
    emit::run(args.clone(), &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        printed.starts_with("index 0  event evt-flags  leaf hash "),
        "{printed}"
    );
    assert!(printed.contains("tree size:  1"), "{printed}");
    // Again: the original index, marked.
    let mut out = Vec::new();
    emit::run(args.clone(), &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        printed.starts_with("index 0  ") && printed.contains("(already in the log)"),
        "{printed}"
    );
    // The same id with other content: the original, and a warning.
    args.occurred_at = Some("-5m".into());
    let mut out = Vec::new();
    emit::run(args, &mut out).await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(
        printed.contains("(this event id is in the log with OTHER content)"),
        "{printed}"
    );

    // From a file holding one object, as JSON.
    let file = scratch.path("one.json");
    std::fs::write(
        &file,
        r#"{
          "occurred_at": "2026-12-03T10:00:00Z",
          "actor": {"id": "bob", "kind": "service"},
          "action": "db.query", "outcome": "failure",
          "attributes": {"rows": 3}
        }"#,
    )
    .unwrap();
    let mut args = emit_args(&log, &scratch);
    args.file = Some(file);
    args.out = OutputArgs { json: true };
    let mut out = Vec::new();
    emit::run(args, &mut out).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["events"][0]["leaf_index"], 1);
    assert_eq!(doc["events"][0]["submitted_by"], "anonymous");
    assert_eq!(doc["tree_head"]["tree_size"], 2);

    // JSON Lines on stdin.
    let mut args = emit_args(&log, &scratch);
    args.file = Some("-".into());
    let lines = (0..3)
        .map(|i| {
            format!(
                "{{\"occurred_at\":\"2026-12-03T11:0{i}:00Z\",\"actor\":{{\"id\":\"carol\",\"kind\":\"user\"}},\"action\":\"file.read\",\"outcome\":\"success\",\"request_id\":\"r{i}\"}}\n"
            )
        })
        .collect::<String>();
    let mut out = Vec::new();
    emit::run_with_input(args, &mut lines.as_bytes(), &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(
        printed.matches("inclusion proof verified").count(),
        3,
        "{printed}"
    );
    // A bad line is refused before anything is sent, naming the line.
    let mut args = emit_args(&log, &scratch);
    args.file = Some("-".into());
    let err = emit::run_with_input(args, &mut &b"{\"actor\":{}}\n{}\n"[..], &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().starts_with("stdin, line 1: "), "{err}");

    // The table, newest first.
    let table = run_search(search_args(&log, &scratch)).await;
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("TIME"), "{table}");
    assert_eq!(rows.len(), 1 + 5 + 1, "{table}");
    assert!(
        rows[1].contains("file.read") && rows[1].contains("       4  "),
        "{table}"
    );
    assert!(
        rows[5].contains("user:alice") && rows[5].contains("account:42"),
        "{table}"
    );
    assert!(rows[6].starts_with("5 hits, each proved"), "{table}");

    // JSON, by occurred time and a filter.
    let mut args = search_args(&log, &scratch);
    args.time = TimeArg::Occurred;
    args.since = "2026-12-03T00:00:00Z".into();
    args.until = "2026-12-04T00:00:00Z".into();
    args.action_prefix = Some("file.".into());
    args.out = OutputArgs { json: true };
    let doc: serde_json::Value = serde_json::from_str(&run_search(args).await).unwrap();
    let hits = doc["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["event"]["request_id"], "r2");
    assert_eq!(hits[2]["event"]["request_id"], "r0");
    assert_eq!(doc["next_cursor"], serde_json::Value::Null);

    // JSON Lines, a page at a time: --limit leaves a cursor, which goes on.
    let mut args = search_args(&log, &scratch);
    args.jsonl = true;
    args.limit = Some(2);
    let first = run_search(args.clone()).await;
    let indexes = |text: &str| -> Vec<u64> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["leaf_index"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(indexes(&first), [4, 3]);
    let mut json = args.clone();
    json.jsonl = false;
    json.out = OutputArgs { json: true };
    let doc: serde_json::Value = serde_json::from_str(&run_search(json).await).unwrap();
    args.cursor = Some(doc["next_cursor"].as_str().unwrap().to_owned());
    args.limit = None;
    assert_eq!(indexes(&run_search(args.clone()).await), [2, 1, 0]);
    // --all follows the cursors itself.
    args.cursor = None;
    args.all = true;
    assert_eq!(indexes(&run_search(args).await), [4, 3, 2, 1, 0]);

    // CSV with quoting.
    let mut args = search_args(&log, &scratch);
    args.csv = true;
    args.actor = Some("bob".into());
    let csv = run_search(args).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("leaf_index,integrated_ms,occurred_at,event_id,"));
    assert!(lines[1].starts_with("1,"), "{csv}");
    assert!(
        lines[1].contains(",service,bob,db.query,,,failure,anonymous,"),
        "{csv}"
    );

    // A bad time is a usage error naming the flag.
    let mut args = search_args(&log, &scratch);
    args.since = "last tuesday".into();
    let err = search::run(args, &mut Vec::new()).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().starts_with("--since \"last tuesday\""),
        "{err}"
    );
}
