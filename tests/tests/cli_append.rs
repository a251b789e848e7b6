//! `merklog append` with more entries than one call takes (issue 19): an
//! entry the log would refuse is named by its input line before anything
//! is sent, and a call that fails part-way leaves the entries of the
//! earlier calls printed and the first line not stored named.

mod client_common;

use client_common::{signer, Log, Scratch};
use merklog_cli::client::append::{self, AppendArgs};
use merklog_cli::client::OutputArgs;
use merklog_tests::liar::{Lie, LyingLog};
use merklog_tests::TestDb;

fn args(log: merklog_cli::client::LogArgs, json: bool) -> AppendArgs {
    AppendArgs {
        log,
        entries: vec![],
        files: vec![],
        whole: false,
        out: OutputArgs { json },
    }
}

/// A log that takes at most two entries of at most 64 bytes per call.
async fn small_log() -> Log {
    let mut config = client_common::config();
    config.limits.max_entries_per_append = 2;
    config.limits.max_entry_bytes = 64;
    Log::start_with(TestDb::sqlite(), signer(), config).await
}

async fn tree_size(log: &Log) -> u64 {
    log.client().await.latest_head().await.unwrap().tree_size()
}

#[tokio::test]
async fn an_oversized_line_is_refused_before_anything_is_sent() {
    let log = small_log().await;
    let scratch = Scratch::new();
    // Lines 1 and 2 would fit; line 4 (after a blank line) is one byte over.
    let stdin = format!("first\nsecond\n\n{}\nlast\n", "x".repeat(65));
    for json in [false, true] {
        let mut out = Vec::new();
        let err = append::run_with_stdin(
            args(log.args(&scratch, None), json),
            &mut stdin.as_bytes(),
            &mut out,
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert_eq!(
            err.to_string(),
            "line 4 of stdin is 65 bytes; the log takes at most 64 bytes per entry \
             (max_entry_bytes); nothing was sent"
        );
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    }
    // Not even the lines before it went: the log holds only its empty tree.
    assert_eq!(tree_size(&log).await, 0);

    // The same input without the long line goes through, in three calls.
    let mut out = Vec::new();
    append::run_with_stdin(
        args(log.args(&scratch, None), true),
        &mut "first\nsecond\n\nlast\n".as_bytes(),
        &mut out,
    )
    .await
    .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed["tree_heads"].as_array().unwrap().len(), 2);
    assert_eq!(tree_size(&log).await, 3);
}

/// Seven entries on eight lines (line 3 blank), two a call: calls 1 and 2
/// go through, call 3 (lines 6 and 7) fails as if the log went away.
const SEVEN: &str = "a\nb\n\nc\nd\ne\nf\ng\n";

async fn append_through_a_log_that_fails_the_third_call(
    log: &Log,
    json: bool,
) -> (String, merklog_cli::client::CommandError) {
    let liar = LyingLog::start(&log.server.url(), log.signer.clone())
        .await
        .unwrap();
    liar.tell(Lie::FailAppendsAfter(2));
    let scratch = Scratch::new();
    let mut logargs = log.args(&scratch, None);
    logargs.server = liar.url();
    let mut out = Vec::new();
    let err = append::run_with_stdin(args(logargs, json), &mut SEVEN.as_bytes(), &mut out)
        .await
        .unwrap_err();
    liar.stop().await.unwrap();
    (String::from_utf8(out).unwrap(), err)
}

#[tokio::test]
async fn a_call_that_fails_part_way_leaves_what_was_stored_printed() {
    let log = small_log().await;
    let (printed, err) = append_through_a_log_that_fails_the_third_call(&log, false).await;
    // The log holds what the first two calls stored, and no more.
    assert_eq!(tree_size(&log).await, 4);
    assert_eq!(err.exit_code(), 2, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("the log answered Unavailable"),
        "{message}"
    );
    assert!(
        message.contains(
            "4 of 7 entries were stored, through line 5 of stdin (printed above); \
             not stored from line 6 of stdin on"
        ),
        "{message}"
    );
    let lines: Vec<&str> = printed.lines().collect();
    for (i, line) in lines[..4].iter().enumerate() {
        assert!(
            line.starts_with(&format!("index {i}  leaf hash ")),
            "{printed}"
        );
    }
    assert!(lines[1].ends_with("verified at size 2"), "{printed}");
    assert!(lines[3].ends_with("verified at size 4"), "{printed}");
    assert_eq!(lines[4], "tree size:  4", "{printed}");

    // Each printed leaf hash is the stored entry's, at its index.
    let entries = log.client().await.entries(0, 4).await.unwrap();
    let data: Vec<&[u8]> = entries.iter().map(|e| e.data.as_slice()).collect();
    assert_eq!(data, [b"a", b"b", b"c", b"d"]);
    for e in &entries {
        assert!(
            lines[e.index as usize].contains(&e.leaf_hash.to_string()),
            "{printed}"
        );
    }
}

#[tokio::test]
async fn with_json_the_stored_entries_are_json_lines() {
    let log = small_log().await;
    let (printed, err) = append_through_a_log_that_fails_the_third_call(&log, true).await;
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err
        .to_string()
        .contains("not stored from line 6 of stdin on"));
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{printed}");
    let inputs: Vec<&str> = lines.iter().map(|l| l["input"].as_str().unwrap()).collect();
    assert_eq!(
        inputs,
        [
            "line 1 of stdin",
            "line 2 of stdin",
            "line 4 of stdin",
            "line 5 of stdin"
        ]
    );
    let entries = log.client().await.entries(0, 4).await.unwrap();
    for (line, e) in lines.iter().zip(&entries) {
        assert_eq!(line["leaf_index"], e.index);
        assert_eq!(line["leaf_hash"], e.leaf_hash.to_string());
        assert_eq!(line["duplicate"], false);
        assert_eq!(
            line["tree_head"]["tree_size"],
            line["inclusion_proof"]["tree_size"]
        );
    }
    assert_eq!(lines[3]["tree_head"]["tree_size"], 4);
}

/// When the very first call fails, nothing is printed and the first line is
/// named.
#[tokio::test]
async fn a_first_call_that_fails_stores_nothing_and_says_so() {
    let log = small_log().await;
    let liar = LyingLog::start(&log.server.url(), log.signer.clone())
        .await
        .unwrap();
    liar.tell(Lie::FailAppendsAfter(0));
    let scratch = Scratch::new();
    let mut logargs = log.args(&scratch, None);
    logargs.server = liar.url();
    let mut out = Vec::new();
    let err = append::run_with_stdin(args(logargs, false), &mut SEVEN.as_bytes(), &mut out)
        .await
        .unwrap_err();
    liar.stop().await.unwrap();
    assert!(out.is_empty());
    assert!(
        err.to_string()
            .contains("nothing was stored: not stored from line 1 of stdin on"),
        "{err}"
    );
    assert_eq!(tree_size(&log).await, 0);
}
