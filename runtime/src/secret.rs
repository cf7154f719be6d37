//! The cluster secret (the cookie) when none is given: generated on a node's first start and kept
//! in its data directory, like Erlang's `.erlang.cookie`.
//!
//! * `<data-dir>/cookie` holds one line: 48 characters of URL-safe base64, 32 random bytes and
//!   the first 4 bytes of their SHA-256, so that a changed character is noticed (a node that
//!   started with a damaged cookie would be cut off its cluster without a word). A 43-character
//!   line (32 bytes, no check: files from before the check) is still read.
//! * The file is created with mode 0600 and never replaced. A file that others can read, that is
//!   empty, that holds more than one line, or a secret of the generated length whose check does
//!   not match is refused with an error naming it (the node does not start), never silently
//!   regenerated: a new cookie would cut the node off its cluster.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let first = runtime::secret::load_or_create_cookie(dir.path()).unwrap();
//! assert!(first.created);
//! let again = runtime::secret::load_or_create_cookie(dir.path()).unwrap();
//! assert_eq!(again.cookie, first.cookie);
//! assert!(!again.created);
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use base64::Engine;

use crate::error::RuntimeError;

/// The name of the cookie file in a node's data directory.
pub const COOKIE_FILE: &str = "cookie";

/// A cookie read from (or just written to) a data directory.
#[derive(Debug, Clone)]
pub struct StoredCookie {
    /// The secret.
    pub cookie: String,
    /// The file it lives in.
    pub path: PathBuf,
    /// Whether this call generated it (the node's first start).
    pub created: bool,
}

/// Random bytes in a generated secret.
const SECRET_BYTES: usize = 32;
/// Check bytes after them (a prefix of their SHA-256).
const CHECK_BYTES: usize = 4;
/// Length of a generated secret's text.
const SECRET_LEN: usize = (SECRET_BYTES + CHECK_BYTES) * 4 / 3;
/// Length of a secret generated before the check was added.
const UNCHECKED_LEN: usize = 43;

fn check_of(random: &[u8]) -> [u8; CHECK_BYTES] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(random);
    [d[0], d[1], d[2], d[3]]
}

/// A fresh random secret: 32 random bytes and a 4-byte check (see the module doc) as URL-safe
/// base64 without padding.
///
/// ```
/// let s = runtime::secret::random_secret().unwrap();
/// assert_eq!(s.len(), 48);
/// assert!(runtime::secret::secret_is_intact(&s));
/// ```
pub fn random_secret() -> Result<String, RuntimeError> {
    let mut b = [0u8; SECRET_BYTES + CHECK_BYTES];
    getrandom::fill(&mut b[..SECRET_BYTES])
        .map_err(|e| RuntimeError::Config(format!("no randomness for a secret: {e}")))?;
    let check = check_of(&b[..SECRET_BYTES]);
    b[SECRET_BYTES..].copy_from_slice(&check);
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Whether a secret as read from its file is one [`random_secret`] made, unchanged (or one made
/// before the check was added, which cannot be checked).
///
/// ```
/// let s = runtime::secret::random_secret().unwrap();
/// let mut damaged = s.clone().into_bytes();
/// damaged[10] = if damaged[10] == b'A' { b'B' } else { b'A' };
/// assert!(!runtime::secret::secret_is_intact(std::str::from_utf8(&damaged).unwrap()));
/// ```
pub fn secret_is_intact(secret: &str) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    match secret.len() {
        SECRET_LEN => match b64.decode(secret) {
            Ok(b) if b.len() == SECRET_BYTES + CHECK_BYTES => {
                b[SECRET_BYTES..] == check_of(&b[..SECRET_BYTES])
            }
            _ => false,
        },
        UNCHECKED_LEN => b64.decode(secret).is_ok_and(|b| b.len() == SECRET_BYTES),
        _ => false,
    }
}

/// The name of the admin API's bearer-token file in a node's data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Read `<dir>/cookie`, or create it (mode 0600) with a [`random_secret`] when it does not exist.
pub fn load_or_create_cookie(dir: &Path) -> Result<StoredCookie, RuntimeError> {
    load_or_create(dir, COOKIE_FILE)
}

/// Read the one-line secret `<dir>/<file>`, or create it as [`load_or_create_cookie`] does.
pub fn load_or_create(dir: &Path, file: &str) -> Result<StoredCookie, RuntimeError> {
    let path = dir.join(file);
    match read_secret_file(&path)? {
        Some(cookie) => Ok(StoredCookie {
            cookie,
            path,
            created: false,
        }),
        None => {
            let cookie = random_secret()?;
            write_secret_file(&path, &cookie)?;
            Ok(StoredCookie {
                cookie,
                path,
                created: true,
            })
        }
    }
}

/// The text of a private file (refused when others may read it), `None` when it does not exist.
pub(crate) fn read_private_file(path: &Path) -> Result<Option<String>, RuntimeError> {
    let bad = |why: String| RuntimeError::Config(format!("secret file {}: {why}", path.display()));
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    };
    check_private(path)?;
    String::from_utf8(text)
        .map(Some)
        .map_err(|_| bad("it is not UTF-8 text".into()))
}

/// The one-line secret in `path`, `None` when the file does not exist.
pub(crate) fn read_secret_file(path: &Path) -> Result<Option<String>, RuntimeError> {
    let bad = |why: String| RuntimeError::Config(format!("secret file {}: {why}", path.display()));
    let Some(text) = read_private_file(path)? else {
        return Ok(None);
    };
    // what deleting it costs, and where a good copy may be
    let admin_token = path.file_name().is_some_and(|f| f == ADMIN_TOKEN_FILE);
    let (regenerate, copy) = if admin_token {
        (
            "delete it to generate a new one, which every client must then be given \
             (DCTL_ADMIN_TOKEN)",
            "restore it from a copy (a client's DCTL_ADMIN_TOKEN)",
        )
    } else {
        (
            "delete it to generate a new one, which cuts this node off the nodes that know \
             the old one",
            "restore it from a copy (another node of the cluster holds the same cookie)",
        )
    };
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    if secret.is_empty() || secret.contains(['\n', '\r']) || secret.trim() != secret {
        return Err(bad(format!(
            "it must hold one line with the secret ({regenerate})"
        )));
    }
    if !secret_is_intact(secret) {
        return Err(bad(format!(
            "it is corrupt (not a secret this node generated: {SECRET_LEN} characters of \
             base64 whose last 4 bytes check the first 32); {copy} or {regenerate}"
        )));
    }
    Ok(Some(secret.to_string()))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| RuntimeError::Config(format!("secret file {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(RuntimeError::Config(format!(
            "secret file {} is readable by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), RuntimeError> {
    Ok(())
}

/// Write a new secret file with mode 0600 (temp file + fsync + rename, so a crash never leaves
/// half a secret).
pub(crate) fn write_secret_file(path: &Path, secret: &str) -> Result<(), RuntimeError> {
    let err = |e: std::io::Error| {
        RuntimeError::Config(format!("cannot write secret file {}: {e}", path.display()))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(secret.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_cookie_is_private_random_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_cookie(dir.path()).unwrap();
        assert!(a.created);
        assert_eq!(a.cookie.len(), 48);
        assert!(secret_is_intact(&a.cookie));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = load_or_create_cookie(dir.path()).unwrap();
        assert_eq!((b.cookie, b.created), (a.cookie.clone(), false));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            load_or_create_cookie(other.path()).unwrap().cookie,
            a.cookie
        );
    }

    #[test]
    fn a_corrupt_or_shared_cookie_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(COOKIE_FILE);
        let good = random_secret().unwrap();
        write_secret_file(&path, &good).unwrap();
        // every character changed in turn, and a cut: refused as corrupt, the file kept
        for i in 0..good.len() {
            let mut b = good.clone().into_bytes();
            b[i] = if b[i] == b'x' { b'y' } else { b'x' };
            let bad = String::from_utf8(b).unwrap();
            std::fs::write(&path, format!("{bad}\n")).unwrap();
            let e = load_or_create_cookie(dir.path()).unwrap_err().to_string();
            assert!(
                e.contains("is corrupt") && e.contains(&path.display().to_string()),
                "{e}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{bad}\n"));
        }
        std::fs::write(&path, &good[..24]).unwrap();
        assert!(load_or_create_cookie(dir.path()).is_err());
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(load_or_create_cookie(dir.path()).unwrap().cookie, good);
        std::fs::write(&path, "").unwrap();
        let e = load_or_create_cookie(dir.path()).unwrap_err().to_string();
        assert!(e.contains("must hold one line"), "{e}");
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(load_or_create_cookie(dir.path()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, format!("{good}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_cookie(dir.path()).unwrap_err().to_string();
            assert!(e.contains("readable by other users"), "{e}");
        }
    }
}
