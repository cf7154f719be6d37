//! The store's identity on disk: `<data-dir>/kv/store.id`, written durably with a check, and
//! how ids are made (random, or derived from a static voter set).

use std::{
    hash::{BuildHasher, Hasher},
    path::Path,
};

use crate::kv::{node_id, types::now_ms, KvError};

fn store_file(dir: &Path) -> std::path::PathBuf {
    dir.join("store.id")
}

/// Whether `id` looks like a store id (what this code writes: `[a-z0-9-]`, 1-64 characters).
pub(crate) fn valid_store_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The check written after a store id in its file: 8 hex digits of its SHA-256.
fn store_id_check(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `id` has the shape of an id written before the check was added: 32 hex digits
/// ([`new_store_id`]) or `static-` and 16 ([`static_store_id`]).
fn legacy_store_id(id: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    hex(id, 32) || id.strip_prefix("static-").is_some_and(|h| hex(h, 16))
}

/// The store id in a `store.id` file's text: `ID CHECK` (or a bare id of the legacy shape).
fn parse_store_id(text: &str) -> Option<String> {
    let line = text.strip_suffix('\n')?;
    match line.split_once(' ') {
        Some((id, check)) => {
            (valid_store_id(id) && check == store_id_check(id)).then(|| id.to_string())
        }
        None => legacy_store_id(line).then(|| line.to_string()),
    }
}

/// The store id kept in `dir` (`None`: none yet). A corrupt file is an error, not "none".
pub(crate) fn read_store_id(dir: &Path) -> Result<Option<String>, KvError> {
    let path = store_file(dir);
    match std::fs::read(&path) {
        Ok(b) => match std::str::from_utf8(&b).ok().and_then(parse_store_id) {
            Some(id) => Ok(Some(id)),
            None => Err(KvError::Storage(format!(
                "{} is corrupt (not a KV store id with its check: {:?}); restore it from a backup, or move {} away and start the node again to join as a new member (after `dctl kv members remove` of this node on a live one)",
                path.display(),
                String::from_utf8_lossy(&b).chars().take(80).collect::<String>(),
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KvError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Write the store id durably (temp file, fsync, rename, fsync of the directory), with its
/// check.
pub(crate) fn write_store_id(dir: &Path, id: &str) -> Result<(), KvError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| KvError::Storage(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("store.id.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(format!("{id} {}\n", store_id_check(id)).as_bytes())
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, store_file(dir)).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A fresh random store id.
pub(crate) fn new_store_id() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{a:016x}{:016x}", b ^ now_ms())
}

/// The store id of a static voter set (the same on every node given the same `--kv-voter`s).
pub(crate) fn static_store_id(voters: &[String]) -> String {
    let mut v = voters.to_vec();
    v.sort();
    v.dedup();
    format!("static-{:016x}", node_id(&v.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_round_trip_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(read_store_id(dir.path()).expect("read"), None);
        let id = new_store_id();
        assert!(valid_store_id(&id), "{id}");
        write_store_id(dir.path(), &id).expect("write");
        assert_eq!(read_store_id(dir.path()).expect("read"), Some(id.clone()));
        let path = dir.path().join("store.id");
        let good = std::fs::read(&path).expect("read");
        let mut flipped = good.clone();
        flipped[3] ^= 1;
        let half = good[..good.len() / 2].to_vec();
        for bad in [b"\xff garbage".to_vec(), flipped, half, b"".to_vec()] {
            std::fs::write(&path, &bad).expect("write");
            match read_store_id(dir.path()) {
                Err(KvError::Storage(e)) => {
                    assert!(e.contains(&path.display().to_string()), "{e}")
                }
                other => panic!("{:?} read as {other:?}", String::from_utf8_lossy(&bad)),
            }
        }
        // a file from before the check
        std::fs::write(&path, format!("{id}\n")).expect("write");
        assert_eq!(read_store_id(dir.path()).expect("read"), Some(id.clone()));
        assert_eq!(
            static_store_id(&["b".into(), "a".into()]),
            static_store_id(&["a".into(), "b".into(), "a".into()])
        );
    }
}
