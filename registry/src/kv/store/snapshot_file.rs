//! The latest snapshot on disk (`snapshot.bin`): written atomically, checksummed, checked on
//! start and written again from the state machine when damaged.

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotBody {
    pub(super) revision: u64,
    pub(super) entries: Vec<KvEntry>,
    pub(super) leases: Vec<(u64, Lease)>,
    pub(super) dedup: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotFile {
    pub(super) meta: SnapshotMeta<NodeId, KvNode>,
    pub(super) body: Vec<u8>,
}

pub(super) fn write_snapshot_file(
    dir: &Path,
    meta: &SnapshotMeta<NodeId, KvNode>,
    body: &[u8],
) -> Result<(), String> {
    let bytes = seal_snapshot(&enc(&SnapshotFile {
        meta: meta.clone(),
        body: body.to_vec(),
    })?);
    let tmp = dir.join("snapshot.bin.tmp");
    let dst = dir.join("snapshot.bin");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&bytes).map_err(s)?;
    f.sync_all().map_err(s)?;
    std::fs::rename(&tmp, &dst).map_err(s)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The first bytes of a snapshot file; a SHA-256 of the rest follows.
pub(super) const SNAPSHOT_MAGIC: &[u8] = b"draft-kv-snapshot 1\n";

/// The snapshot file's bytes: [`SNAPSHOT_MAGIC`], the SHA-256 of `payload`, `payload`.
pub(super) fn seal_snapshot(payload: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.extend_from_slice(&sha2::Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of a snapshot file's bytes, if they are whole.
pub(super) fn open_snapshot(b: &[u8]) -> Result<&[u8], &'static str> {
    use sha2::Digest;
    let rest = b
        .strip_prefix(SNAPSHOT_MAGIC)
        .ok_or("not a KV snapshot file (no header)")?;
    if rest.len() < 32 {
        return Err("truncated");
    }
    let (sum, payload) = rest.split_at(32);
    if sha2::Sha256::digest(payload).as_slice() != sum {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

/// The latest snapshot (`None`: none was taken). A damaged file is an error naming it.
pub(super) fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, String> {
    let path = dir.join("snapshot.bin");
    let b = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let payload =
        open_snapshot(&b).map_err(|why| format!("{} is corrupt ({why})", path.display()))?;
    dec(payload)
        .map(Some)
        .map_err(|e| format!("{} is corrupt ({e})", path.display()))
}

/// Check `snapshot.bin` on start. It is a copy of the state machine at one log index, kept to
/// send to members that lag behind the compacted log: when it is damaged (and the state machine
/// is whole), it is moved to `snapshot.bin.corrupt` and written again from the state machine.
pub(crate) fn check_snapshot_file(sm: &StateMachine) -> Result<(), String> {
    let dir = &sm.dir;
    let path = dir.join("snapshot.bin");
    let Err(why) = read_snapshot_file(dir) else {
        return Ok(());
    };
    if !path.exists() {
        return Err(why);
    }
    let aside = dir.join("snapshot.bin.corrupt");
    std::fs::rename(&path, &aside).map_err(|e| format!("{why}; cannot move it aside: {e}"))?;
    let (meta, _) = StateMachine::build_snapshot_sync(&sm.db, dir)?;
    tracing::warn!(file = %path.display(), moved_to = %aside.display(), snapshot = %meta.snapshot_id, "kv: {why}; written again from the state machine");
    Ok(())
}
