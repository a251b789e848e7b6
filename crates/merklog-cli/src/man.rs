//! Manual pages and shell completions, made from the command definitions
//! themselves so that they cannot drift from the code.
//!
//! `clap_mangen` renders each page's NAME, SYNOPSIS, DESCRIPTION, OPTIONS
//! and SUBCOMMANDS from clap's model (the same text `--help` prints);
//! `clap_complete` writes the completion scripts. What clap does not know
//! (EXAMPLES, EXIT STATUS, FILES) is kept here, in one table per command;
//! ENVIRONMENT is collected from the options' `env` names. A page for a
//! command without examples is an error, so a new command cannot ship
//! undocumented (`tests/man_pages.rs` also checks the pages in `docs/man`
//! are what this module makes).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Command;
use roff::{bold, italic, roman, Inline, Roff};

#[derive(clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages to (created if missing): one
    /// `merklog.1` and one `merklog-COMMAND.1` per command.
    #[arg(long, default_value = "man")]
    pub out_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for, on stdout.
    pub shell: clap_complete::Shell,
}

/// Writes a page per command into `args.out_dir` and prints their paths.
pub fn run_man(command: Command, args: &ManArgs, out: &mut impl Write) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    for (name, page) in pages(command)? {
        let path = args.out_dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

/// Writes the completion script for `args.shell` to `out`.
pub fn run_completions(
    mut command: Command,
    args: &CompletionsArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Into memory first: clap_complete panics on a failed write (a closed
    // pipe), and a write error here is reported like any other.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "merklog", &mut script);
    out.write_all(&script)?;
    Ok(())
}

/// Returns `(page name, roff text)` for `merklog` and every command below
/// it, depth first.
///
/// # Errors
/// When a command has no entry in [`EXAMPLES`].
pub fn pages(command: Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut command = command;
    command.build();
    let mut pages = Vec::new();
    collect(&command, &[], &mut pages)?;
    Ok(pages)
}

fn collect(
    command: &Command,
    path: &[&str],
    pages: &mut Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let words: Vec<&str> = path
        .iter()
        .copied()
        .chain(std::iter::once(command.get_name()))
        .collect();
    // `merklog`, `merklog-serve`, `merklog-prove-inclusion`.
    let name = words.join("-");
    let invocation = words.join(" ");
    pages.push((name.clone(), page(command, &name, &invocation)?));
    for sub in command.get_subcommands() {
        if sub.get_name() != "help" {
            collect(sub, &words, pages)?;
        }
    }
    Ok(())
}

fn page(command: &Command, name: &str, invocation: &str) -> anyhow::Result<Vec<u8>> {
    let Some(examples) = EXAMPLES.iter().find(|e| e.command == invocation) else {
        bail!("the command `{invocation}` has no EXAMPLES entry in crates/merklog-cli/src/man.rs");
    };
    let command = command.clone().name(name.to_string());
    let man = clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .section("1")
        .source(format!("merklog {}", env!("CARGO_PKG_VERSION")))
        .manual("merklog manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut extra = Roff::new();
    section(&mut extra, "EXAMPLES");
    for (line, what) in examples.lines {
        extra.control("TP", [] as [&str; 0]);
        extra.text([bold(*line)]);
        extra.text([roman(*what)]);
    }
    section(&mut extra, "EXIT STATUS");
    for (code, what) in examples.kind.exit_status() {
        extra.control("TP", [] as [&str; 0]);
        extra.text([bold(*code)]);
        extra.text([roman(*what)]);
    }
    let environment = environment(&command);
    if !environment.is_empty() {
        section(&mut extra, "ENVIRONMENT");
        for (variable, option) in environment {
            extra.control("TP", [] as [&str; 0]);
            extra.text([bold(variable)]);
            extra.text([roman("Sets "), bold(option), roman(".")]);
        }
    }
    if !examples.files.is_empty() {
        section(&mut extra, "FILES");
        for (file, what) in examples.files {
            extra.control("TP", [] as [&str; 0]);
            extra.text([italic(*file)]);
            extra.text([roman(*what)]);
        }
    }
    section(&mut extra, "SEE ALSO");
    let see_also: Vec<Inline> = if name == "merklog" {
        vec![roman(
            "merklog-COMMAND(1) for each command; docs/ in the source tree.",
        )]
    } else {
        vec![bold("merklog"), roman("(1)")]
    };
    extra.text(see_also);
    extra.to_writer(&mut out)?;
    if command.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

fn section(roff: &mut Roff, title: &str) {
    roff.control("SH", [title]);
}

/// The `(variable, --option)` pairs of `command`'s options that read an
/// environment variable.
fn environment(command: &Command) -> Vec<(String, String)> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let variable = a.get_env()?.to_string_lossy().into_owned();
            let option = match a.get_long() {
                Some(long) => format!("--{long}"),
                None => a.get_id().to_string().to_uppercase(),
            };
            Some((variable, option))
        })
        .collect()
}

/// Which exit codes a command uses.
#[derive(Clone, Copy)]
enum Kind {
    /// Checks a log or a document: 0, 1 for a failed check, 2 otherwise.
    Checking,
    /// `monitor`: as [`Kind::Checking`], and 3 for a `--max-age` alarm.
    Monitoring,
    /// Talks to a log but checks nothing (`log-info`): 0, 1 for a
    /// malformed answer, 2 otherwise.
    Unverified,
    /// Anything else: 0 or 1.
    Plain,
}

impl Kind {
    fn exit_status(self) -> &'static [(&'static str, &'static str)] {
        const PASSED: (&str, &str) = ("0", "Every check passed.");
        const FAILED: (&str, &str) = (
            "1",
            "The log, the store or a saved document failed a check, or the log said its \
             store is damaged (DATA_LOSS): evidence of tampering, a fork, a rollback or a \
             forged record. The message names it.",
        );
        const NOT_MADE: (&str, &str) = (
            "2",
            "The check could not be made: a usage error, an unreadable file, no connection, \
             or another error status from the log.",
        );
        match self {
            Kind::Checking => &[PASSED, FAILED, NOT_MADE],
            Kind::Monitoring => &[
                PASSED,
                FAILED,
                NOT_MADE,
                (
                    "3",
                    "With --max-age: the log's latest head is older than that, or the log has \
                     not been reached for longer (since the last check that passed, or the \
                     saved head's time): a frozen or hidden log.",
                ),
            ],
            Kind::Unverified => &[
                (
                    "0",
                    "The server answered; what it said is printed, unverified.",
                ),
                (
                    "1",
                    "The server's answer is malformed (a key that cannot be read).",
                ),
                (
                    "2",
                    "A usage error, no connection, or an error status from the server.",
                ),
            ],
            Kind::Plain => &[
                ("0", "Success."),
                ("1", "An error; the message on standard error says which."),
            ],
        }
    }
}

struct Examples {
    /// The command as typed, without options: `merklog prove inclusion`.
    command: &'static str,
    kind: Kind,
    lines: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static str)],
}

const CLIENT_FILES: &[(&str, &str)] = &[
    (
        "log.pub",
        "The log's public key (from merklog public-key), pinned with --public-key.",
    ),
    (
        "STATE",
        "With --state: the last verified tree head, which every later head must extend.",
    ),
];

const SERVE_FILES: &[(&str, &str)] = &[
    (
        "./data/merklog.db",
        "The embedded SQLite store used when no --database-url is given.",
    ),
    (
        "./data/log-key.pem",
        "The log's private key; the embedded default creates it on first run (mode 0600).",
    ),
];

const EXAMPLES: &[Examples] = &[
    Examples {
        command: "merklog",
        kind: Kind::Plain,
        lines: &[
            ("merklog serve", "Runs a log on the embedded SQLite store in ./data."),
            (
                "merklog public-key > log.pub",
                "Prints the key that clients pin.",
            ),
            (
                "merklog append --public-key log.pub hello",
                "Appends an entry and prints its verified receipt.",
            ),
            (
                "merklog audit --public-key log.pub",
                "Downloads the whole log and recomputes its tree.",
            ),
        ],
        files: SERVE_FILES,
    },
    Examples {
        command: "merklog serve",
        kind: Kind::Plain,
        lines: &[
            ("merklog serve", "Serves the embedded default: ./data/merklog.db, creating ./data/log-key.pem on first run."),
            (
                "merklog serve --database-url postgres://merklog_service@db/merklog --key log-key.pem --auth-file auth.toml",
                "Serves a PostgreSQL log that requires bearer tokens.",
            ),
            (
                "merklog serve --tls-cert server.pem --tls-key server-key.pem --metrics-listen 127.0.0.1:9300",
                "Serves over TLS and exposes Prometheus metrics.",
            ),
        ],
        files: SERVE_FILES,
    },
    Examples {
        command: "merklog keygen",
        kind: Kind::Plain,
        lines: &[
            ("merklog keygen", "Writes a new key to ./data/log-key.pem, where serve looks for it."),
            ("merklog keygen --out log-key.pem", "Writes a new key to log-key.pem (mode 0600); refuses to overwrite."),
        ],
        files: &[("./data/log-key.pem", "The default key file.")],
    },
    Examples {
        command: "merklog public-key",
        kind: Kind::Plain,
        lines: &[(
            "merklog public-key --key log-key.pem > log.pub",
            "Writes the public key for clients; the log ID goes to standard error.",
        )],
        files: &[("./data/log-key.pem", "The default key file.")],
    },
    Examples {
        command: "merklog token",
        kind: Kind::Plain,
        lines: &[
            (
                "merklog token --name billing",
                "Prints a new writer token and the auth file entry that grants it.",
            ),
            (
                "merklog token --name auditor --role reader --json",
                "The same, for a reader, as one JSON document.",
            ),
        ],
        files: &[],
    },
    Examples {
        command: "merklog cert-fingerprint",
        kind: Kind::Plain,
        lines: &[(
            "merklog cert-fingerprint client.pem --name billing",
            "Prints the certificate's fingerprint and the auth file entry that grants it.",
        )],
        files: &[],
    },
    Examples {
        command: "merklog append",
        kind: Kind::Checking,
        lines: &[
            ("merklog append --public-key log.pub hello world", "Appends two entries."),
            ("journalctl -o cat | merklog append --public-key log.pub", "Appends one entry per line of standard input."),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog sth",
        kind: Kind::Checking,
        lines: &[("merklog sth --public-key log.pub --json", "Prints the latest tree head, verified.")],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog log-info",
        kind: Kind::Unverified,
        lines: &[
            ("merklog log-info --server http://log.example:7300", "Prints the log ID, public key and limits the server states, marked NOT VERIFIED."),
            ("merklog log-info --json > claimed.json", "The same as JSON, with \"verified\": false."),
        ],
        files: &[],
    },
    Examples {
        command: "merklog entries",
        kind: Kind::Checking,
        lines: &[("merklog entries --public-key log.pub --start 0 --end 10", "Prints the first ten entries, each checked.")],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog prove",
        kind: Kind::Checking,
        lines: &[
            ("merklog prove inclusion --public-key log.pub --entry hello", "Proves an entry is in the log."),
            ("merklog prove consistency --public-key log.pub --first 2", "Proves the tree of 2 is a prefix of the latest."),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog prove inclusion",
        kind: Kind::Checking,
        lines: &[(
            "merklog prove inclusion --public-key log.pub --entry hello --proof-out proof.json --head-out head.json",
            "Proves an entry is in the log and saves the proof and head for merklog verify.",
        )],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog prove consistency",
        kind: Kind::Checking,
        lines: &[(
            "merklog prove consistency --public-key log.pub --first 2",
            "Proves the tree of 2 entries is a prefix of the latest tree.",
        )],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog verify",
        kind: Kind::Checking,
        lines: &[
            (
                "merklog verify --public-key log.pub --head head.json --proof proof.json",
                "Checks a saved proof offline, without the log.",
            ),
            (
                "merklog verify --public-key log.pub --head head.json --proof proof.json --entry-file record.bin",
                "Also checks that record.bin is the record the proof proves (its leaf hash).",
            ),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog monitor",
        kind: Kind::Monitoring,
        lines: &[
            ("merklog monitor --public-key log.pub --state monitor.json --once", "Checks the latest head once against the saved one."),
            ("merklog monitor --public-key log.pub --state monitor.json --json", "Follows the log, one JSON line per check, each with its time."),
            ("merklog monitor --public-key log.pub --state monitor.json --max-age 15m", "Follows the log and raises an alarm (exit status 3) when its latest head is older than 15 minutes or it cannot be reached for longer."),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog audit",
        kind: Kind::Checking,
        lines: &[("merklog audit --public-key log.pub", "Downloads every entry and recomputes the tree against the signed heads.")],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog verify-store",
        kind: Kind::Checking,
        lines: &[(
            "merklog verify-store --public-key log.pub --database-url sqlite://./data/merklog.db",
            "Checks a store's leaves, nodes and heads directly.",
        )],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog emit",
        kind: Kind::Checking,
        lines: &[
            (
                "merklog emit --public-key log.pub --actor alice --action auth.login --outcome failure --source-ip 192.0.2.7",
                "Appends one audit event and prints its verified receipt.",
            ),
            (
                "merklog emit --public-key log.pub --file events.jsonl",
                "Appends the events of a JSON Lines file (one event object per line).",
            ),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog search",
        kind: Kind::Checking,
        lines: &[
            (
                "merklog search --public-key log.pub --since -7d --actor alice --outcome failure",
                "Lists alice's failed actions of the last week, newest first, each hit's proof checked.",
            ),
            (
                "merklog search --public-key log.pub --time occurred --since 2026-12-01T14:00:00Z --until 2026-12-01T15:00:00Z --resource-kind database --resource-id prod-7 --all --csv",
                "Everything that touched a database in one hour, as CSV.",
            ),
        ],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog export",
        kind: Kind::Checking,
        lines: &[(
            "merklog export --public-key log.pub --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z --entries day.jsonl --bundle day.bundle.json",
            "Writes every entry integrated that day and a proof that none is missing.",
        )],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog verify-export",
        kind: Kind::Checking,
        lines: &[(
            "merklog verify-export --public-key log.pub --bundle day.bundle.json --entries day.jsonl",
            "Checks an export offline, with only the public key.",
        )],
        files: CLIENT_FILES,
    },
    Examples {
        command: "merklog man",
        kind: Kind::Plain,
        lines: &[(
            "merklog man --out-dir /usr/local/share/man/man1",
            "Installs these pages.",
        )],
        files: &[],
    },
    Examples {
        command: "merklog completions",
        kind: Kind::Plain,
        lines: &[
            (
                "merklog completions bash > /etc/bash_completion.d/merklog",
                "Installs bash completion.",
            ),
            (
                "merklog completions zsh > ~/.zfunc/_merklog",
                "Installs zsh completion (with ~/.zfunc on fpath).",
            ),
        ],
        files: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("merklog")
            .subcommand(
                Command::new("keygen")
                    .arg(clap::Arg::new("out").long("out").env("MERKLOG_KEY_OUT")),
            )
            .subcommand(Command::new("no-examples"))
    }

    #[test]
    fn a_command_without_examples_is_refused() {
        let err = pages(command()).unwrap_err().to_string();
        assert!(err.contains("`merklog no-examples`"), "{err}");
    }

    #[test]
    fn environment_variables_are_listed_with_their_options() {
        let mut command = command();
        command.build();
        let keygen = command.find_subcommand("keygen").unwrap();
        assert_eq!(
            environment(keygen),
            vec![("MERKLOG_KEY_OUT".to_string(), "--out".to_string())]
        );
    }
}
