//! The manual pages in `docs/man` are exactly what `merklog man` makes from
//! the code, every page has the sections a reader looks for, and the
//! completion scripts name every command.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const MERKLOG: &str = env!("CARGO_BIN_EXE_merklog");

fn pages_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn generated() -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MERKLOG)
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "merklog man failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pages_in(dir.path())
}

#[test]
fn committed_pages_are_what_the_code_makes() {
    let committed = pages_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/man"));
    let generated = generated();
    let regenerate = "regenerate them: rm docs/man/*.1 && \
                      cargo run -p merklog-cli -- man --out-dir docs/man";
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "docs/man holds other pages than the commands have; {regenerate}"
    );
    for (name, page) in &generated {
        assert!(
            committed[name] == *page,
            "docs/man/{name} is out of date; {regenerate}"
        );
    }
}

#[test]
fn every_page_has_examples_exit_status_and_its_options() {
    let pages = generated();
    for name in [
        "merklog.1",
        "merklog-serve.1",
        "merklog-keygen.1",
        "merklog-append.1",
        "merklog-audit.1",
        "merklog-prove-inclusion.1",
        "merklog-completions.1",
    ] {
        assert!(pages.contains_key(name), "no page {name}");
    }
    for (name, page) in &pages {
        let text = String::from_utf8_lossy(page);
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
        ] {
            assert!(text.contains(section), "{name} has no {section}");
        }
    }
    let serve = String::from_utf8_lossy(&pages["merklog-serve.1"]).into_owned();
    for needle in [
        ".SH ENVIRONMENT",
        "MERKLOG_DATABASE_URL",
        "\\-\\-database\\-url",
        ".SH FILES",
        "log\\-key.pem",
    ] {
        assert!(serve.contains(needle), "merklog-serve.1 lacks {needle}");
    }
    let audit = String::from_utf8_lossy(&pages["merklog-audit.1"]).into_owned();
    assert!(
        audit.contains("MERKLOG_PUBLIC_KEY") && audit.contains("failed a check"),
        "merklog-audit.1 lacks its environment or exit status 1"
    );
}

#[test]
fn completion_scripts_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(MERKLOG)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "completions {shell} failed");
        let script = String::from_utf8(out.stdout).unwrap();
        for command in ["serve", "append", "verify-store", "monitor", "completions"] {
            assert!(
                script.contains(command),
                "the {shell} script does not complete `{command}`"
            );
        }
    }
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // Standard output is a pipe whose reader is already gone, so the first
    // write fails with EPIPE (Rust ignores SIGPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for args in [
        &["completions", "bash"][..],
        &["token", "--name", "x"][..],
        &["verify", "--help"][..],
    ] {
        let out = Command::new(MERKLOG)
            .args(args)
            .stdout(writer.try_clone().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(101) && !stderr.contains("panicked"),
            "merklog {args:?} panicked on a closed pipe: {stderr}"
        );
        if args[0] != "verify" {
            assert!(
                out.status.success(),
                "merklog {args:?}: {:?}, {stderr}",
                out.status
            );
            assert!(stderr.is_empty(), "merklog {args:?}: {stderr}");
        }
    }
}
