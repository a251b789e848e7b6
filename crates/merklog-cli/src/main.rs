//! `merklog`: run a log, make its key, and (as a client) talk to one.

mod keygen;
mod man;
mod metrics_http;
mod serve;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "merklog",
    version,
    about = "A Merkle-tree transparency log (RFC 6962 / RFC 9162)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log service.
    Serve(serve::ServeArgs),
    /// Generate a log signing key (PKCS#8 PEM, ECDSA P-256, mode 0600).
    Keygen(keygen::KeygenArgs),
    /// Print the public key (PEM) and log ID of a private key file.
    PublicKey(keygen::PublicKeyArgs),
    /// Generate a bearer token for a client and the line that grants it.
    Token(keygen::TokenArgs),
    /// Print a client certificate's SHA-256 fingerprint and the line that
    /// grants it a role (with mutual TLS).
    CertFingerprint(keygen::CertFingerprintArgs),
    #[command(flatten)]
    Client(merklog_cli::client::ClientCommand),
    /// Write the manual pages (roff) of merklog and every command.
    Man(man::ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(man::CompletionsArgs),
}

// A gRPC service allocates and frees many small buffers per call; mimalloc
// does that with less CPU than glibc's allocator (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Locked per command, never while serving: the server's log lines go
    // to stdout from its worker threads.
    let stdout = || std::io::stdout().lock();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Keygen(args) => keygen::run(args, &mut stdout()),
        Command::Token(args) => keygen::token(args, &mut stdout()),
        Command::CertFingerprint(args) => keygen::cert_fingerprint(args, &mut stdout()),
        Command::PublicKey(args) => keygen::public_key(args, &mut stdout()),
        Command::Man(args) => man::run_man(Cli::command(), &args, &mut stdout()),
        Command::Completions(args) => man::run_completions(Cli::command(), &args, &mut stdout()),
        // Exit codes of the client commands: 0 ok, 1 verification
        // failure, 2 usage or connection error (docs/FORMATS.md).
        Command::Client(command) => return command.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that stopped reading (`merklog token | head -1`) is not
        // an error worth a message.
        Err(e) if merklog_cli::client::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("merklog: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
