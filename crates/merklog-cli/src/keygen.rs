use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use merklog_client::private_file::{write_private, Existing};
use merklog_sth::{LogSigner, Zeroizing};

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, created with mode 0600);
    /// the default is where `merklog serve` and `merklog public-key` look.
    #[arg(long, short, default_value = DEFAULT_KEY_PATH)]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Where `keygen` writes, `serve` reads and `public-key` reads the log's key
/// when none is named.
pub const DEFAULT_KEY_PATH: &str = "./data/log-key.pem";

pub fn run(args: KeygenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    write_private_key(&args.out, &signer, args.force)?;
    let public = signer.public_key();
    writeln!(out, "wrote {}", args.out.display())?;
    writeln!(out, "log ID: {}", public.log_id())?;
    write!(out, "{}", public.pem())?;
    Ok(())
}

#[derive(clap::Args)]
pub struct PublicKeyArgs {
    /// The private key file (PKCS#8 PEM).
    #[arg(long, short, env = "MERKLOG_KEY", default_value = DEFAULT_KEY_PATH)]
    pub key: PathBuf,
}

/// Prints the public key in PEM on stdout (for `--public-key` files) and the
/// log ID on stderr.
pub fn public_key(args: PublicKeyArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let signer = read_private_key(&args.key)?;
    write!(out, "{}", signer.public_key().pem())?;
    eprintln!("log ID: {}", signer.public_key().log_id());
    Ok(())
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The client's name, as the access log will show it.
    #[arg(long)]
    pub name: String,
    /// `writer` may append and read; `reader` may only read.
    #[arg(long, default_value = "writer", value_parser = ["writer", "reader"])]
    pub role: String,
    /// Print one JSON object: `token`, `name`, `role`, `token_sha256` and
    /// `auth_file_entry` (the TOML lines to add).
    #[arg(long)]
    pub json: bool,
}

/// Prints a new random bearer token and the `[[client]]` entry of the
/// `--auth-file` that grants it; only the token's hash goes into the file.
pub fn token(args: TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    use rand_core::RngCore;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    let token = hex::encode(secret);
    let token_sha256 = merklog_server::token_hash(&token);
    let entry = format!(
        "[[client]]\nname = {:?}\nrole = {:?}\ntoken_sha256 = {token_sha256:?}\n",
        args.name, args.role
    );
    if args.json {
        let document = serde_json::json!({
            "token": token,
            "name": args.name,
            "role": args.role,
            "token_sha256": token_sha256,
            "auth_file_entry": entry,
        });
        writeln!(out, "{document}")?;
    } else {
        writeln!(
            out,
            "token (give it to the client; it is not stored anywhere): {token}"
        )?;
        writeln!(out)?;
        writeln!(out, "add to the auth file:")?;
        write!(out, "{entry}")?;
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct CertFingerprintArgs {
    /// The client's certificate (PEM); with a chain, the first (leaf)
    /// certificate counts.
    pub cert: std::path::PathBuf,
    /// The client's name, as the access log will show it.
    #[arg(long, default_value = "CLIENT-NAME")]
    pub name: String,
    /// `writer` may append and read; `reader` may only read.
    #[arg(long, default_value = "writer", value_parser = ["writer", "reader"])]
    pub role: String,
}

/// Prints the SHA-256 fingerprint of a client certificate and the
/// `[[client]]` entry of the `--auth-file` that grants it a role.
pub fn cert_fingerprint(args: CertFingerprintArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let pem = std::fs::read(&args.cert)
        .with_context(|| format!("cannot read the certificate {}", args.cert.display()))?;
    let fingerprint = merklog_server::leaf_fingerprint_from_pem(&pem)
        .with_context(|| format!("in {}", args.cert.display()))?;
    writeln!(out, "sha256 fingerprint (DER): {fingerprint}")?;
    writeln!(out)?;
    writeln!(out, "add to the auth file (the log needs --tls-client-ca):")?;
    writeln!(out, "[[client]]")?;
    writeln!(out, "name = {:?}", args.name)?;
    writeln!(out, "role = {:?}", args.role)?;
    writeln!(out, "cert_sha256 = {fingerprint:?}")?;
    Ok(())
}

/// Writes `signer`'s key to `path`, readable by its owner only.
///
/// With `overwrite`, the key goes to a new file (mode 0600, under a random
/// name, created exclusively) that is renamed over `path`: the old file's
/// mode is not kept, and a symbolic link at `path` is replaced, not written
/// through. Without it, `path` must not exist.
pub fn write_private_key(path: &Path, signer: &LogSigner, overwrite: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Directories made here (./data for the embedded default) are the
        // owner's alone, as the store made beside the key is.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let existing = if overwrite {
        Existing::Replace
    } else {
        Existing::Keep
    };
    write_private(path, signer.to_pkcs8_pem().as_bytes(), existing).with_context(|| {
        format!(
            "cannot create {} (use --force to overwrite an existing key)",
            path.display()
        )
    })
}

/// Reads a PKCS#8 PEM private key; the text is wiped once parsed.
pub fn read_private_key(path: &Path) -> anyhow::Result<LogSigner> {
    let pem = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?,
    );
    LogSigner::from_pkcs8_pem(&pem).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_written_for_the_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/log-key.pem");
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        write_private_key(&path, &signer, false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        assert_eq!(
            read_private_key(&path).unwrap().public_key(),
            signer.public_key()
        );

        let other = LogSigner::generate(&mut rand_core::OsRng);
        let err = write_private_key(&path, &other, false).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        assert_eq!(
            read_private_key(&path).unwrap().public_key(),
            signer.public_key()
        );
        write_private_key(&path, &other, true).unwrap();
        assert_eq!(
            read_private_key(&path).unwrap().public_key(),
            other.public_key()
        );
    }

    #[cfg(unix)]
    #[test]
    fn force_writes_a_fresh_owner_only_file_and_replaces_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log-key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        write_private_key(&path, &signer, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let target = dir.path().join("elsewhere.pem");
        std::fs::write(&target, "not a key").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_private_key(&path, &signer, true).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "not a key");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(
            read_private_key(&path).unwrap().public_key(),
            signer.public_key()
        );
    }
}
