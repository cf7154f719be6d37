//! The gossip keyring, as in Serf: the primary key seals every datagram, every installed key
//! opens them, so a key is rotated across a running cluster by `install` (everywhere), `use`
//! (everywhere) and `remove` (everywhere) without a node ever being cut off.
//!
//! * Keys are 32 random bytes (AES-256), written as standard base64 (`dctl keys generate`).
//! * A node starts with the keyring in `<data-dir>/gossip.keyring` when there is one (written,
//!   mode 0600, on every change, one key per line, the primary first, then a `sha256:` line
//!   checking them: a damaged file is refused, naming it); otherwise with the key
//!   given (`--gossip-key`, `DCTL_GOSSIP_KEY`) or, without one, a key derived from the cookie,
//!   so nodes that share a cookie share a key with no more configuration.
//!
//! ```
//! let mut ring = runtime::keyring::Keyring::from_cookie("secret");
//! let new = runtime::keyring::generate_key().unwrap();
//! ring.install(&new).unwrap();
//! ring.use_key(&new).unwrap();
//! let old = ring.list()[1].clone();
//! ring.remove(&old).unwrap();
//! assert_eq!(ring.list(), vec![new]);
//! ```

use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::seal::RawKey;

/// The keyring file in a node's data directory.
pub const KEYRING_FILE: &str = "gossip.keyring";
/// Most keys a keyring holds (each datagram may be tried against every one).
pub const MAX_KEYS: usize = 8;
/// The start of the keyring file's last line, the check of the lines before it.
const CHECK_PREFIX: &str = "sha256:";

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a keyring operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Not 32 bytes of base64.
    #[error("a gossip key is 32 bytes in base64 (dctl keys generate makes one): {0}")]
    BadKey(String),
    /// `use` or `remove` of a key that is not installed.
    #[error("key {0} is not installed")]
    NotInstalled(String),
    /// Removing the primary key.
    #[error("key {0} is the primary key: make another key primary (use) before removing it")]
    Primary(String),
    /// Too many keys.
    #[error("the keyring holds at most {MAX_KEYS} keys: remove one first")]
    Full,
    /// The keyring file is unreadable or corrupt.
    #[error("gossip keyring {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// A set of keys, the first one primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<RawKey>,
}

/// A new random key, in base64.
pub fn generate_key() -> Result<String, KeyringError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| KeyringError::BadKey(format!("no randomness: {e}")))?;
    Ok(encode(&k))
}

fn encode(k: &RawKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

/// Parse a base64 key.
pub fn parse_key(s: &str) -> Result<RawKey, KeyringError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| KeyringError::BadKey(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| KeyringError::BadKey(format!("{} bytes, not 32", b.len())))
}

impl Keyring {
    /// A keyring of one primary key.
    pub fn new(primary: &str) -> Result<Keyring, KeyringError> {
        Ok(Keyring {
            keys: vec![parse_key(primary)?],
        })
    }

    /// A keyring of the key derived from `cookie` (SHA-256 of a label and the cookie).
    pub fn from_cookie(cookie: &str) -> Keyring {
        let mut h = Sha256::new();
        h.update(b"draft gossip key v1\0");
        h.update(cookie.as_bytes());
        Keyring {
            keys: vec![h.finalize().into()],
        }
    }

    /// The keys, the primary first.
    pub(crate) fn raw(&self) -> &[RawKey] {
        &self.keys
    }

    /// The primary key.
    pub(crate) fn primary(&self) -> &RawKey {
        &self.keys[0]
    }

    /// The keys in base64, the primary first.
    pub fn list(&self) -> Vec<String> {
        self.keys.iter().map(encode).collect()
    }

    /// Add a key that opens datagrams (no-op if installed). Returns whether it changed.
    pub fn install(&mut self, key: &str) -> Result<bool, KeyringError> {
        let k = parse_key(key)?;
        if self.keys.contains(&k) {
            return Ok(false);
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::Full);
        }
        self.keys.push(k);
        Ok(true)
    }

    /// Make an installed key the primary one. Returns whether it changed.
    pub fn use_key(&mut self, key: &str) -> Result<bool, KeyringError> {
        let k = parse_key(key)?;
        let i = self
            .keys
            .iter()
            .position(|x| *x == k)
            .ok_or_else(|| KeyringError::NotInstalled(key.to_string()))?;
        if i == 0 {
            return Ok(false);
        }
        let k = self.keys.remove(i);
        self.keys.insert(0, k);
        Ok(true)
    }

    /// Remove a key that is not the primary one (no-op if absent). Returns whether it changed.
    pub fn remove(&mut self, key: &str) -> Result<bool, KeyringError> {
        let k = parse_key(key)?;
        if self.keys[0] == k {
            return Err(KeyringError::Primary(key.to_string()));
        }
        let before = self.keys.len();
        self.keys.retain(|x| *x != k);
        Ok(self.keys.len() != before)
    }

    /// The file's text: one base64 key per line, the primary first.
    /// The file's text: one key per line, the primary first, then `sha256:` and the hex SHA-256
    /// of the key lines (joined by newlines), so that a changed or missing line is noticed.
    pub(crate) fn to_text(&self) -> String {
        let keys = self.list().join("\n");
        format!("{keys}\n{CHECK_PREFIX}{}", hex_sha256(&keys))
    }

    pub(crate) fn from_text(path: &Path, text: &str) -> Result<Keyring, KeyringError> {
        let file_err = |why: String| KeyringError::File {
            path: path.to_path_buf(),
            why,
        };
        let restore = "restore it from another node's copy, or delete it to start from \
                       --gossip-key / the cookie's key";
        let text = text.strip_suffix('\n').unwrap_or(text);
        let (keys_text, check) = text
            .rsplit_once('\n')
            .and_then(|(k, c)| Some((k, c.strip_prefix(CHECK_PREFIX)?)))
            .ok_or_else(|| {
                file_err(format!(
                    "it is corrupt: no '{CHECK_PREFIX}' line after the keys; {restore}"
                ))
            })?;
        if check != hex_sha256(keys_text) {
            return Err(file_err(format!(
                "it is corrupt: its keys do not match its '{CHECK_PREFIX}' line; {restore}"
            )));
        }
        let keys = keys_text
            .lines()
            .map(|l| parse_key(l).map_err(|e| file_err(format!("{e} (line '{l}')"))))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(file_err(format!(
                "it holds {} keys (1 to {MAX_KEYS} expected); restore it from another node's \
                 copy or delete it to start from --gossip-key / the cookie's key",
                keys.len()
            )));
        }
        Ok(Keyring { keys })
    }

    /// The keyring kept in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Keyring>, KeyringError> {
        let path = dir.join(KEYRING_FILE);
        let text = crate::secret::read_private_file(&path).map_err(|e| KeyringError::File {
            path: path.clone(),
            why: e.to_string(),
        })?;
        text.map(|t| Keyring::from_text(&path, &t)).transpose()
    }

    /// Write the keyring to `dir` (mode 0600, atomically).
    pub fn save(&self, dir: &Path) -> Result<(), KeyringError> {
        let path = dir.join(KEYRING_FILE);
        crate::secret::write_secret_file(&path, &self.to_text()).map_err(|e| KeyringError::File {
            path: path.clone(),
            why: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_install_use_remove() {
        let mut r = Keyring::from_cookie("c");
        let old = r.list()[0].clone();
        let new = generate_key().unwrap();
        assert_eq!(
            r.use_key(&new),
            Err(KeyringError::NotInstalled(new.clone()))
        );
        assert_eq!(r.install(&new), Ok(true));
        assert_eq!(r.install(&new), Ok(false));
        assert_eq!(r.list(), vec![old.clone(), new.clone()]);
        assert_eq!(r.remove(&old), Err(KeyringError::Primary(old.clone())));
        assert_eq!(r.use_key(&new), Ok(true));
        assert_eq!(r.remove(&old), Ok(true));
        assert_eq!(r.list(), vec![new]);
        assert!(matches!(r.install("short"), Err(KeyringError::BadKey(_))));
    }

    #[test]
    fn the_cookie_key_is_the_same_for_the_same_cookie_only() {
        assert_eq!(Keyring::from_cookie("a"), Keyring::from_cookie("a"));
        assert_ne!(Keyring::from_cookie("a"), Keyring::from_cookie("b"));
    }

    #[test]
    fn the_file_round_trips_and_a_corrupt_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Keyring::load(dir.path()), Ok(None));
        let mut r = Keyring::new(&generate_key().unwrap()).unwrap();
        r.install(&generate_key().unwrap()).unwrap();
        r.save(dir.path()).unwrap();
        assert_eq!(Keyring::load(dir.path()), Ok(Some(r.clone())));
        let path = dir.path().join(KEYRING_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        assert_eq!(lines.len(), 3, "{good}");
        // garbage, a key changed, a key line lost, the check line lost: each refused by name
        let one_key_changed = good.replacen(&lines[1][..4], "AAAA", 1);
        let second_key_lost = format!("{}\n{}\n", lines[0], lines[2]);
        let unchecked = format!("{}\n{}\n", lines[0], lines[1]);
        for bad in [
            "not base64 at all!\n",
            one_key_changed.as_str(),
            second_key_lost.as_str(),
            unchecked.as_str(),
            "",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = Keyring::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
    }
}
