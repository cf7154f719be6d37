//! Small metadata files written atomically, with a checksum and the previous good copy.
//!
//! A file is one header line `draft-meta 1 sha256:<hex of the body>` and a JSON body. It is
//! replaced by writing `<file>.tmp`, fsyncing it, renaming the current file to `<file>.prev`,
//! renaming the temporary file into place and fsyncing the directory. On read, a file whose
//! checksum or JSON is wrong is never replaced by defaults: the previous copy is used when it
//! is good (a warning says so), otherwise [`MetaError::Corrupt`] names the file and what to do.
//! A file without the header (written by an older version) is read as plain JSON.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

const MAGIC: &str = "draft-meta 1 sha256:";

/// A metadata file could not be read or written.
#[derive(Debug, Error)]
pub enum MetaError {
    /// The file (and any previous copy) is damaged.
    #[error("broker data file {} is corrupt ({reason}) and no good previous copy ({}) exists; {recovery}", file.display(), prev.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Its previous copy.
        prev: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// How to recover.
        recovery: String,
    },
    /// Reading or writing failed.
    #[error("broker data file {}: {reason}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What failed.
        reason: String,
    },
}

fn prev_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".prev");
    PathBuf::from(p)
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encode a value as file contents (header and body).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let mut out = format!("{MAGIC}{}\n", hex(&Sha256::digest(&body))).into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode file contents, checking the checksum.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_bytes()) else {
        // An older version's plain JSON.
        return serde_json::from_slice(bytes).map_err(|e| format!("not a metadata file: {e}"));
    };
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("header line not terminated")?;
    let (sum, body) = (&rest[..nl], &rest[nl + 1..]);
    if sum != hex(&Sha256::digest(body)).as_bytes() {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))
}

fn read_one<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Read a metadata file: `None` if it was never written. `recovery` tells the operator what
/// to do should the file be corrupt.
pub(crate) fn read<T: DeserializeOwned>(
    path: &Path,
    recovery: &str,
) -> Result<Option<T>, MetaError> {
    let prev = prev_of(path);
    match read_one(path) {
        Ok(Some(v)) => Ok(Some(v)),
        // Missing: a crash between the two renames leaves only the previous copy.
        Ok(None) => read_one(&prev).map_err(|reason| MetaError::Corrupt {
            file: prev.clone(),
            prev: prev.clone(),
            reason,
            recovery: recovery.to_string(),
        }),
        Err(reason) => match read_one::<T>(&prev) {
            Ok(Some(v)) => {
                tracing::warn!(
                    "broker: {} is corrupt ({reason}); using its previous copy {}",
                    path.display(),
                    prev.display()
                );
                Ok(Some(v))
            }
            _ => Err(MetaError::Corrupt {
                file: path.to_path_buf(),
                prev,
                reason,
                recovery: recovery.to_string(),
            }),
        },
    }
}

/// Replace a metadata file atomically, keeping the current one as the previous copy.
pub(crate) fn write<T: Serialize>(path: &Path, value: &T) -> Result<(), MetaError> {
    let io = |e: std::io::Error| MetaError::Io {
        file: path.to_path_buf(),
        reason: e.to_string(),
    };
    let bytes = encode(value).map_err(|reason| MetaError::Io {
        file: path.to_path_buf(),
        reason,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = tmp_of(path);
    {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    match std::fs::rename(path, prev_of(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Offsets = BTreeMap<String, u64>;

    fn offsets(n: u64) -> Offsets {
        BTreeMap::from([("g".to_string(), n)])
    }

    #[test]
    fn write_then_read_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("groups.json");
        assert_eq!(read::<Offsets>(&f, "-").unwrap(), None);
        write(&f, &offsets(1)).unwrap();
        write(&f, &offsets(2)).unwrap();
        assert_eq!(read::<Offsets>(&f, "-").unwrap(), Some(offsets(2)));
        assert!(!tmp_of(&f).exists());
    }

    #[test]
    fn a_damaged_file_falls_back_to_the_previous_copy() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("groups.json");
        write(&f, &offsets(1)).unwrap();
        write(&f, &offsets(2)).unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01; // one flipped bit in the body
        std::fs::write(&f, &bytes).unwrap();
        assert_eq!(read::<Offsets>(&f, "-").unwrap(), Some(offsets(1)));
        // Between the two renames only the previous copy exists.
        std::fs::remove_file(&f).unwrap();
        assert_eq!(read::<Offsets>(&f, "-").unwrap(), Some(offsets(1)));
    }

    #[test]
    fn damaged_without_a_good_copy_is_an_error_naming_the_file_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("durable.json");
        write(&f, &offsets(1)).unwrap();
        for damage in [b"garbage\x00\xff".to_vec(), Vec::new(), {
            let mut b = encode(&offsets(1)).unwrap();
            b.truncate(b.len() - 1);
            b
        }] {
            std::fs::write(&f, &damage).unwrap();
            std::fs::write(prev_of(&f), b"also bad").unwrap();
            let err = read::<Offsets>(&f, "move it away").unwrap_err().to_string();
            assert!(err.contains(&f.display().to_string()), "{err}");
            assert!(
                err.contains("is corrupt") && err.ends_with("move it away"),
                "{err}"
            );
        }
    }

    #[test]
    fn plain_json_of_an_older_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("channels.json");
        std::fs::write(&f, br#"{"g":5}"#).unwrap();
        assert_eq!(read::<Offsets>(&f, "-").unwrap(), Some(offsets(5)));
    }
}
