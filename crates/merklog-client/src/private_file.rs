//! Writing a file that only its owner may read (a state file, a private
//! key), so that a reader or a crash sees the old file or the new one and a
//! planted symbolic link redirects nothing.
//!
//! The new content goes to a file created exclusively (`O_CREAT|O_EXCL`,
//! plus `O_NOFOLLOW`) with mode 0600 under a random name in the target's
//! directory; it is synced and renamed over the target, and the directory
//! is synced. A fresh file never inherits the mode of the file it replaces,
//! and `rename` replaces a symbolic link at the target rather than writing
//! through it. It does not lock: callers that read, decide and write (the
//! state file) hold their own lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rand_core::RngCore as _;

/// Whether [`write_private`] may replace a file that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (or a symbolic link in its place) atomically.
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] when anything, even a
    /// dangling symbolic link, is at the path.
    Keep,
}

/// How many random names are tried before giving up: a collision of 64
/// random bits means someone plants names, not bad luck.
const ATTEMPTS: usize = 8;

/// Writes `bytes` to `path` with mode 0600 (on Unix), atomically.
///
/// # Errors
/// Any I/O error; [`io::ErrorKind::AlreadyExists`] with [`Existing::Keep`]
/// when `path` exists. A temporary file is removed again on failure.
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    if existing == Existing::Keep {
        // Created in place: O_EXCL is what refuses an existing file.
        let mut file = create_exclusive(path)?;
        let result = write_and_sync(&mut file, bytes);
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result?;
        sync_dir(&dir);
        return Ok(());
    }
    let (tmp, mut file) = create_temporary(&dir, name)?;
    let result = write_and_sync(&mut file, bytes)
        // A crash before this rename leaves the old file intact.
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir);
    Ok(())
}

/// Creates `.<name>.<16 random hex>.tmp` in `dir`, trying new names while
/// one is taken.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", rand_core::OsRng.next_u64()));
        let tmp = dir.join(tmp_name);
        match create_exclusive(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name tried")))
}

/// Opens a new file for writing: fails if anything, a symbolic link
/// included, is at `path`.
fn create_exclusive(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_EXCL already refuses a symbolic link at the last component
        // (POSIX); O_NOFOLLOW says so again should a platform differ.
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

fn write_and_sync(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs `dir` so that a new name in it is durable.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        // Best effort: not every platform can sync a directory.
        let _ = d.sync_all();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_replaced_file_gets_a_fresh_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new", Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symbolic_links_are_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &path).unwrap();

        let err = write_private(&path, b"new", Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        write_private(&path, b"new", Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
    }
}
