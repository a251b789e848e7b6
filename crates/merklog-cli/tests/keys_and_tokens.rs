//! The `merklog` binary with private keys and tokens: `keygen --force`
//! writes a fresh owner-only file and replaces a symbolic link rather than
//! writing through it; a token bound for a plain-text address that is not
//! this machine is refused before any connection; `keygen` writes where
//! `serve` and `public-key` look; `token --json` is an auth file entry.

use std::path::Path;
use std::process::Output;

fn merklog(args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .args(args)
        .env_remove("MERKLOG_TOKEN")
        .env_remove("MERKLOG_SERVER")
        .output()
        .expect("run merklog")
}

fn keygen_force(out: &Path) -> Output {
    merklog(&[
        "keygen".as_ref(),
        "--force".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
}

#[cfg(unix)]
#[test]
fn keygen_force_writes_a_fresh_owner_only_file_and_does_not_follow_links() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log-key.pem");
    std::fs::write(&key, "an old key").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = keygen_force(&key);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the old file's mode is not kept");
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));

    // A link planted where the key goes: the key replaces the link, and
    // the file it pointed to is untouched.
    let target = dir.path().join("somewhere-else");
    std::fs::write(&target, "not yours").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(&target, &key).unwrap();
    let out = keygen_force(&key);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "not yours");
    let meta = std::fs::symlink_metadata(&key).unwrap();
    assert!(meta.is_file(), "the link was replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
}

#[test]
fn a_token_for_a_plain_text_remote_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public.pem");
    let signer = merklog_sth::LogSigner::generate(&mut rand_core::OsRng);
    std::fs::write(&public, signer.public_key().pem()).unwrap();
    let out = merklog(&[
        "sth".as_ref(),
        "--server".as_ref(),
        "http://10.255.255.1:7300".as_ref(),
        "--public-key".as_ref(),
        public.as_os_str(),
        "--token".as_ref(),
        "writer-token".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to send the bearer token in clear text"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-insecure-token"), "{stderr}");
    assert!(!stderr.contains("writer-token"), "{stderr}");
}

#[test]
fn token_json_grants_what_the_text_form_grants() {
    let out = merklog(&[
        "token".as_ref(),
        "--name".as_ref(),
        "billing".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = doc["token"].as_str().unwrap();
    assert_eq!(token.len(), 64, "32 random bytes in hex");
    assert_eq!(doc["name"], "billing");
    assert_eq!(doc["role"], "writer");
    let hash = merklog_server::token_hash(token);
    assert_eq!(doc["token_sha256"], hash.as_str());
    assert_eq!(
        doc["auth_file_entry"],
        format!("[[client]]\nname = \"billing\"\nrole = \"writer\"\ntoken_sha256 = \"{hash}\"\n")
    );
    // The entry is what the server's auth file accepts, and it grants the token.
    let auth = merklog_server::AuthConfig::from_toml(doc["auth_file_entry"].as_str().unwrap());
    assert!(auth.is_ok(), "{:?}", auth.err());
}

#[test]
fn keygen_writes_where_serve_and_public_key_look() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .arg("keygen")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/log-key.pem").is_file());
    let public = std::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .arg("public-key")
        .current_dir(dir.path())
        .env_remove("MERKLOG_KEY")
        .output()
        .unwrap();
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    assert!(String::from_utf8_lossy(&public.stdout).contains("BEGIN PUBLIC KEY"));
}
