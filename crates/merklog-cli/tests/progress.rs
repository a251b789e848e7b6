//! Progress bars (issue 19) appear only on a terminal's stderr and never
//! with `--json`: a piped run's stderr is empty, while the same run on a
//! terminal (through `script`, which gives it one) draws the bar there.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{new_log_key, start};

/// What one `merklog` run printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `merklog append` of the lines in `input` against `url`, with
/// stdin, stdout and stderr piped (no terminal).
async fn piped_append(url: &str, public_key: &Path, input: &Path, json: bool) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"));
    command
        .args(["append", "--server", url, "--public-key"])
        .arg(public_key)
        .arg("--file")
        .arg(input)
        .args(json.then_some("--json"))
        .env_clear()
        .stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("merklog append ends within 120 s")
        .expect("run merklog");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the same append with a terminal as its stdout and stderr, through
/// `script`, and returns what the terminal showed.
async fn append_on_a_terminal(url: &str, public_key: &Path, input: &Path, json: bool) -> Run {
    let line = format!(
        "{} append --server {url} --public-key {} --file {}{}",
        env!("CARGO_BIN_EXE_merklog"),
        public_key.display(),
        input.display(),
        if json { " --json" } else { "" }
    );
    let mut command = tokio::process::Command::new("script");
    command
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env_clear()
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("script ends within 120 s")
        .expect("run script (util-linux)");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_drawn_only_on_a_terminal_and_never_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = new_log_key(dir.path());
    let public_key = dir.path().join("public.pem");
    let db = format!("sqlite://{}", dir.path().join("log.db").display());
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        start(&db, &key, &dir.path().join("serve.log")),
    )
    .await
    .expect("merklog serve starts within 60 s");

    // Several calls' worth (the default is 1,000 entries a call).
    let write_input = |name: &str| {
        let path = dir.path().join(name);
        let lines: String = (0..2500).map(|i| format!("{name} entry {i}\n")).collect();
        std::fs::write(&path, lines).unwrap();
        path
    };

    for json in [false, true] {
        let input = write_input(&format!("piped-{json}"));
        let run = piped_append(&server.url, &public_key, &input, json).await;
        assert!(run.ok, "{}", run.stderr);
        assert!(
            run.stderr.is_empty(),
            "a piped stderr gets no progress: {:?}",
            run.stderr
        );
        assert!(!run.stdout.contains('\r') && !run.stdout.contains('\u{1b}'));
    }

    // The control: the same append on a terminal draws the bar, so the
    // empty stderr above means it was withheld; with --json it is not drawn
    // even on a terminal.
    let input = write_input("terminal");
    let run = append_on_a_terminal(&server.url, &public_key, &input, false).await;
    assert!(run.ok, "{}", run.stdout);
    assert!(
        run.stdout.contains("/2500 entries"),
        "a terminal shows the bar: {:?}",
        &run.stdout[..run.stdout.len().min(2000)]
    );
    let input = write_input("terminal-json");
    let run = append_on_a_terminal(&server.url, &public_key, &input, true).await;
    assert!(run.ok, "{}", run.stdout);
    assert!(!run.stdout.contains("entries ("), "no bar with --json");
    let printed: serde_json::Value =
        serde_json::from_str(&run.stdout.replace("\r\n", "\n")).expect("only the JSON document");
    assert_eq!(printed["entries"].as_array().unwrap().len(), 2500);

    drop(server);
}
