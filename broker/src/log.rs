//! The append-only on-disk log of a durable channel.
//!
//! File `<data_dir>/broker/<channel>.log`: records of `[len: u32 LE][fnv1a-32 of payload: u32 LE]
//! [payload: the event's JSON]`. A record's offset is its index (0, 1, 2, ...). Fsync policy:
//! every append is written and `fsync`ed (`File::sync_data`) before it is acknowledged, so an
//! acknowledged event survives a crash or power loss. On open the file is scanned; a torn or
//! corrupt tail (a crash in the middle of an append, never acknowledged) is truncated.
//! Committed consumer-group offsets live in `<channel>.groups.json`, replaced atomically
//! (write to a temp file, fsync, rename, fsync the directory).

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

pub(crate) struct Log {
    file: File,
    /// Byte position of each record.
    index: Vec<u64>,
    end: u64,
    groups_path: PathBuf,
    dir: PathBuf,
    pub(crate) groups: BTreeMap<String, u64>,
}

fn fnv(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

impl Log {
    pub(crate) fn open(dir: &Path, channel: &str) -> std::io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{channel}.log"));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let mut index = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
                as usize;
            let sum =
                u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
                break;
            };
            if fnv(payload) != sum {
                break;
            }
            index.push(pos as u64);
            pos += 8 + len;
        }
        if pos < data.len() {
            tracing::warn!(
                "durable log {}: truncating {} bytes of torn tail",
                path.display(),
                data.len() - pos
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        let groups_path = dir.join(format!("{channel}.groups.json"));
        let groups = match std::fs::read(&groups_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        Ok(Log {
            file,
            index,
            end: pos as u64,
            groups_path,
            dir: dir.to_path_buf(),
            groups,
        })
    }

    /// Append records and fsync; returns the first offset.
    pub(crate) fn append(&mut self, payloads: &[&[u8]]) -> std::io::Result<u64> {
        let first = self.index.len() as u64;
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(payloads.len());
        for p in payloads {
            positions.push(self.end + buf.len() as u64);
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&fnv(p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
        {
            // Do not leave a partial record behind an acknowledged one.
            let _ = self.file.set_len(self.end);
            return Err(e);
        }
        self.end += buf.len() as u64;
        self.index.extend(positions);
        Ok(first)
    }

    /// Number of records (the next offset to be written).
    pub(crate) fn len(&self) -> u64 {
        self.index.len() as u64
    }

    /// The next offset to be written.
    #[cfg(test)]
    pub(crate) fn next_offset(&self) -> u64 {
        self.index.len() as u64
    }

    /// Up to `max` records from `from`.
    pub(crate) fn read(&self, from: u64, max: usize) -> std::io::Result<Vec<(u64, String)>> {
        let mut out = Vec::new();
        let mut off = from;
        while (off as usize) < self.index.len() && out.len() < max {
            let pos = self.index[off as usize];
            let mut head = [0u8; 8];
            self.file.read_exact_at(&mut head, pos)?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut payload = vec![0u8; len];
            self.file.read_exact_at(&mut payload, pos + 8)?;
            let text = String::from_utf8(payload)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            out.push((off, text));
            off += 1;
        }
        Ok(out)
    }

    /// Record a consumer group's next offset durably.
    pub(crate) fn commit(&mut self, group: &str, next: u64) -> std::io::Result<()> {
        let cur = self.groups.get(group).copied().unwrap_or(0);
        if next <= cur {
            return Ok(());
        }
        self.groups.insert(group.to_string(), next);
        let tmp = self.groups_path.with_extension("json.tmp");
        let body = serde_json::to_vec(&self.groups)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.groups_path)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), "c").unwrap();
        assert_eq!(log.append(&[b"a", b"bb"]).unwrap(), 0);
        assert_eq!(log.append(&[b"ccc"]).unwrap(), 2);
        log.commit("g", 2).unwrap();
        drop(log);
        // a torn record at the end
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("c.log"))
            .unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let log = Log::open(dir.path(), "c").unwrap();
        assert_eq!(log.next_offset(), 3);
        let recs = log.read(1, 10).unwrap();
        assert_eq!(recs, vec![(1, "bb".into()), (2, "ccc".into())]);
        assert_eq!(log.groups.get("g"), Some(&2));
    }
}
