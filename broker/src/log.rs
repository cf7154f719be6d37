//! The append-only on-disk log of a durable channel, and its queue groups' offsets.
//!
//! File `<data_dir>/broker/<channel>.log`: records of `[len: u32 LE][fnv1a-32 of payload: u32 LE]
//! [payload: the event's JSON]`. A record's offset is its index (0, 1, 2, ...). Every append is
//! written and `fsync`ed (`File::sync_data`) before it is acknowledged, so an acknowledged event
//! survives a crash or power loss.
//!
//! Opening streams through the file once (keeping 8 bytes per record: its position), never
//! holding it whole in memory. At the first record that does not check out, the rest of the
//! file is classified ([`classify_tail`]): a *torn tail* (an append cut short by a crash, so
//! never acknowledged: an incomplete or zero-filled last record with no valid record after it)
//! is truncated; anything else is *corruption* of acknowledged events and opening fails with
//! [`LogError::Corrupt`], which names the file, the offset and the byte position, and leaves
//! the file as it is.
//!
//! Committed consumer-group offsets live in `<channel>.groups.json` ([`crate::metafile`]). They
//! also bound the log from below: a log holding fewer whole records than a group has taken was
//! cut short (emptied, or cut inside or between records) and refuses to open, before any torn
//! tail is truncated. A cut past every group's offset, at or inside the last records, reads as
//! records that were never written (or as a torn append): events no group has taken yet are
//! lost then, as nothing outside the file records how many were acknowledged.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{BufReader, Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::metafile::{self, MetaError};

/// The longest tail an interrupted append can leave (a produce request is far smaller): a bad
/// record followed by more than this is corruption, not a torn append.
const MAX_TORN_TAIL: u64 = 64 << 20;

/// Opening or using a log failed.
#[derive(Debug, Error)]
pub enum LogError {
    /// A record in the log is damaged and acknowledged events may follow it.
    #[error("durable log {} is corrupt: record at offset {offset} (byte {byte}) is damaged ({reason}) and {after} bytes follow it; the channel is not served. Restore the file from a backup, or accept losing the events from offset {offset} on with `truncate -s {byte} {}`", file.display(), file.display())]
    Corrupt {
        /// The log file.
        file: PathBuf,
        /// The damaged record's offset.
        offset: u64,
        /// Its byte position.
        byte: u64,
        /// Bytes after it.
        after: u64,
        /// What is wrong.
        reason: String,
    },
    /// The group offsets file is damaged.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Reading or writing failed.
    #[error("durable log {}: {source}", file.display())]
    Io {
        /// The log file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

pub(crate) fn fnv(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// One record's encoding.
pub(crate) fn record(payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(8 + payload.len());
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&fnv(payload).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// What follows the last good record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// An interrupted append: truncate it.
    Torn,
    /// Damage before acknowledged data (or before a complete, non-empty record).
    Corrupt(String),
}

/// Whether a valid record starts at `pos` of `bytes`; `None` when checking it would hash more
/// than the `budget` of bytes left (which it spends).
fn valid_at(bytes: &[u8], pos: usize, budget: &mut usize) -> Option<bool> {
    let Some(head) = bytes.get(pos..pos + 8) else {
        return Some(false);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let Some(p) = bytes.get(pos + 8..pos + 8 + len).filter(|_| len > 0) else {
        return Some(false);
    };
    *budget = budget.checked_sub(len)?;
    Some(fnv(p) == sum)
}

/// Bytes that looking for a valid record after a damaged one may hash, per byte of the tail
/// (plus [`SCAN_SLACK`]). Every position of the tail is a candidate record whose length field
/// says how much to hash, so damage that reads as many plausible lengths would otherwise cost
/// time quadratic in the tail; a torn append (record headers, then JSON text, whose bytes never
/// read as a length that fits) hashes far less than this.
const SCAN_PER_BYTE: usize = 16;
const SCAN_SLACK: usize = 1 << 20;

/// Classify the bytes from the first record that does not check out to the end of the file.
pub(crate) fn classify_tail(tail: &[u8]) -> Tail {
    let mut budget = tail.len().saturating_mul(SCAN_PER_BYTE) + SCAN_SLACK;
    for at in 1..tail.len() {
        match valid_at(tail, at, &mut budget) {
            Some(false) => {}
            Some(true) => {
                return Tail::Corrupt(format!("a valid record follows {at} bytes later"));
            }
            None => {
                return Tail::Corrupt(
                    "damaged beyond telling an interrupted append from lost records".into(),
                );
            }
        }
    }
    if tail.len() < 8 {
        return Tail::Torn; // an incomplete header
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    match tail.get(8..8 + len) {
        // The record runs past the end of the file: an append cut short, if the length is one
        // an append could have written.
        None if len as u64 <= MAX_TORN_TAIL => Tail::Torn,
        None => Tail::Corrupt(format!("impossible record length {len}")),
        Some(p) if p.iter().all(|b| *b == 0) => Tail::Torn, // space allocated, never written
        Some(_) if 8 + len < tail.len() => Tail::Corrupt("checksum mismatch".into()),
        Some(_) => Tail::Corrupt("checksum mismatch in a complete record".into()),
    }
}

pub(crate) struct Log {
    file: File,
    path: PathBuf,
    /// Byte position of each record.
    index: Vec<u64>,
    end: u64,
    groups_path: PathBuf,
    pub(crate) groups: BTreeMap<String, u64>,
}

/// The log file of a channel.
pub(crate) fn log_path(dir: &Path, channel: &str) -> PathBuf {
    dir.join(format!("{channel}.log"))
}

impl Log {
    pub(crate) fn open(dir: &Path, channel: &str) -> Result<Log, LogError> {
        let path = log_path(dir, channel);
        let io = |source| LogError::Io {
            file: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 16, &file);
        let mut index = Vec::new();
        let mut pos = 0u64;
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; 8];
            if pos + 8 > size || reader.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
            let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if len == 0 || pos + 8 + len > size {
                break;
            }
            payload.resize(len as usize, 0);
            reader.read_exact(&mut payload).map_err(io)?;
            if fnv(&payload) != sum {
                break;
            }
            index.push(pos);
            pos += 8 + len;
        }
        drop(reader);
        let corrupt = |reason: String| LogError::Corrupt {
            file: path.clone(),
            offset: index.len() as u64,
            byte: pos,
            after: size - pos,
            reason,
        };
        // What follows the last whole record: nothing, a torn append, or damage.
        let torn = if pos < size {
            let after = size - pos;
            if after > MAX_TORN_TAIL {
                return Err(corrupt("far more than one append".into()));
            }
            let mut tail = vec![0u8; after as usize];
            file.read_exact_at(&mut tail, pos).map_err(io)?;
            match classify_tail(&tail) {
                Tail::Corrupt(reason) => return Err(corrupt(reason)),
                Tail::Torn => true,
            }
        } else {
            false
        };
        // The queue groups' committed offsets say how many events were acknowledged at least:
        // a log holding fewer was cut short (emptied, or cut inside or between records), which
        // no torn append explains. Checked before a torn tail is truncated.
        let groups_path = dir.join(format!("{channel}.groups.json"));
        let recovery = format!(
            "move it away to start the queue groups of channel '{channel}' from the beginning \
             of its log (they then get events again)"
        );
        let groups: BTreeMap<String, u64> =
            metafile::read(&groups_path, &recovery)?.unwrap_or_default();
        if let Some((group, &taken)) = groups.iter().max_by_key(|(_, o)| **o) {
            if taken > index.len() as u64 {
                return Err(corrupt(format!(
                    "queue group '{group}' has taken {taken} events but only {} whole records are left: acknowledged events are missing, the file was cut short",
                    index.len()
                )));
            }
        }
        if torn {
            tracing::warn!(
                "durable log {}: truncating {} bytes of torn tail (an append interrupted by a \
                 crash, never acknowledged)",
                path.display(),
                size - pos
            );
            file.set_len(pos).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(Log {
            file,
            path,
            index,
            end: pos,
            groups_path,
            groups,
        })
    }

    /// Append records and fsync; returns the first offset.
    pub(crate) fn append(&mut self, payloads: &[&[u8]]) -> Result<u64, LogError> {
        let first = self.index.len() as u64;
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(payloads.len());
        for p in payloads {
            positions.push(self.end + buf.len() as u64);
            buf.extend_from_slice(&record(p));
        }
        if let Err(source) = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
        {
            // Do not leave a partial record behind an acknowledged one.
            let _ = self.file.set_len(self.end);
            return Err(LogError::Io {
                file: self.path.clone(),
                source,
            });
        }
        self.end += buf.len() as u64;
        self.index.extend(positions);
        Ok(first)
    }

    /// Number of records (the next offset to be written).
    pub(crate) fn len(&self) -> u64 {
        self.index.len() as u64
    }

    /// Up to `max` records from `from`.
    pub(crate) fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, String)>, LogError> {
        let io = |source| LogError::Io {
            file: self.path.clone(),
            source,
        };
        let mut out = Vec::new();
        let mut off = from;
        while (off as usize) < self.index.len() && out.len() < max {
            let pos = self.index[off as usize];
            let mut head = [0u8; 8];
            self.file.read_exact_at(&mut head, pos).map_err(io)?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let mut payload = vec![0u8; len];
            self.file.read_exact_at(&mut payload, pos + 8).map_err(io)?;
            let text = String::from_utf8(payload).map_err(|e| {
                io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            })?;
            out.push((off, text));
            off += 1;
        }
        Ok(out)
    }

    /// Record a consumer group's next offset durably.
    pub(crate) fn commit(&mut self, group: &str, next: u64) -> Result<(), LogError> {
        let cur = self.groups.get(group).copied().unwrap_or(0);
        if next <= cur {
            return Ok(());
        }
        let mut groups = self.groups.clone();
        groups.insert(group.to_string(), next);
        metafile::write(&self.groups_path, &groups)?;
        self.groups = groups;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append_raw(dir: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join("c.log"))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn three_records(dir: &Path) {
        let mut log = Log::open(dir, "c").unwrap();
        assert_eq!(log.append(&[b"a", b"bb"]).unwrap(), 0);
        assert_eq!(log.append(&[b"ccc"]).unwrap(), 2);
        log.commit("g", 2).unwrap();
    }

    #[test]
    fn append_read_reopen_and_a_torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        append_raw(dir.path(), &[9, 0, 0, 0, 1, 2]); // a record cut short
        let log = Log::open(dir.path(), "c").unwrap();
        assert_eq!(log.len(), 3);
        let recs = log.read(1, 10).unwrap();
        assert_eq!(recs, vec![(1, "bb".into()), (2, "ccc".into())]);
        assert_eq!(log.groups.get("g"), Some(&2));
        drop(log);
        // zero-filled space after the last record (allocated, never written)
        append_raw(dir.path(), &[0u8; 40]);
        assert_eq!(Log::open(dir.path(), "c").unwrap().len(), 3);
    }

    #[test]
    fn a_damaged_record_before_acknowledged_ones_refuses_to_open_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        let path = dir.path().join("c.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8 + 1 + 8] ^= 0x20; // the payload of record 1 ("bb")
        std::fs::write(&path, &bytes).unwrap();
        let err = Log::open(dir.path(), "c")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("c.log is corrupt"), "{err}");
        assert!(err.contains("offset 1 (byte 9)"), "{err}");
        assert!(err.contains("truncate -s 9"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it is");
    }

    #[test]
    fn a_log_cut_short_of_what_a_group_took_refuses_to_open_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path()); // group g took 2 of the 3 records
        let path = dir.path().join("c.log");
        let whole = std::fs::read(&path).unwrap();
        // emptied; cut inside record 1 (which would read as a torn append); cut after record 0
        for cut in [0, 9 + 8 + 1, 9] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let err = Log::open(dir.path(), "c")
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("c.log is corrupt"), "{err}");
            assert!(err.contains("queue group 'g' has taken 2 events"), "{err}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                &whole[..cut],
                "left as it is"
            );
        }
        // cut after record 1: every event the group took is there (the third was never taken,
        // and a cut there reads as a torn append: see the module doc)
        std::fs::write(&path, &whole[..9 + 10 + 2]).unwrap();
        assert_eq!(Log::open(dir.path(), "c").unwrap().len(), 2);
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_not_taken_for_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        let path = dir.path().join("c.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = Log::open(dir.path(), "c")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("offset 2"), "{err}");
    }

    #[test]
    fn garbage_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.log"),
            b"{\"not\": \"a log at all\"}\n".repeat(10),
        )
        .unwrap();
        let err = Log::open(dir.path(), "c")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("offset 0 (byte 0)"), "{err}");
    }

    /// Whatever one damage does to a log, opening it never serves wrong data: it either opens
    /// with a prefix of what was written (a torn tail dropped) or refuses.
    #[test]
    fn a_damaged_log_opens_with_a_prefix_of_what_was_written_or_refuses() {
        let written: Vec<String> = (0..6).map(|i| format!("{{\"id\":\"{i}\"}}")).collect();
        let mut rng = 0x2545f4914f6cdd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut opened, mut refused) = (0, 0);
        for _ in 0..300 {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut log = Log::open(dir.path(), "c").unwrap();
                let p: Vec<&[u8]> = written.iter().map(|s| s.as_bytes()).collect();
                log.append(&p).unwrap();
            }
            let path = dir.path().join("c.log");
            let mut bytes = std::fs::read(&path).unwrap();
            let at = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[at] ^= 1 << (next() % 8),
                1 => bytes.truncate(at),
                _ => bytes[at..].iter_mut().for_each(|b| *b = next() as u8),
            }
            std::fs::write(&path, &bytes).unwrap();
            match Log::open(dir.path(), "c") {
                Ok(log) => {
                    opened += 1;
                    let got = log.read(0, 100).unwrap();
                    assert!(got.len() <= written.len());
                    for (off, text) in got {
                        assert_eq!(text, written[off as usize], "wrong data served");
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
                }
            }
        }
        assert!(
            opened > 0 && refused > 0,
            "{opened} opened, {refused} refused"
        );
    }

    /// Garbage in which a record length that fits starts at every few bytes: telling whether a
    /// valid record follows the damage must not hash each candidate (quadratic in the tail:
    /// some 10^11 bytes for these 2 MiB); it stops at a budget and refuses the log.
    #[test]
    fn a_tail_of_plausible_lengths_is_judged_within_a_bounded_scan() {
        let mut tail = Vec::with_capacity(2 << 20);
        while tail.len() < 2 << 20 {
            // Read at offsets 0, 1, 2 (mod 4): lengths 1 MiB, 4 KiB and 16 bytes.
            tail.extend_from_slice(&[0, 0, 0x10, 0]);
        }
        assert_eq!(
            classify_tail(&tail),
            Tail::Corrupt("damaged beyond telling an interrupted append from lost records".into())
        );
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        append_raw(dir.path(), &tail);
        let err = Log::open(dir.path(), "c").err().expect("refused");
        assert!(matches!(err, LogError::Corrupt { offset: 3, .. }), "{err}");
    }

    #[test]
    fn classify_tail_cases() {
        assert_eq!(classify_tail(&[1, 0]), Tail::Torn);
        assert_eq!(classify_tail(&record(b"abc")[..9]), Tail::Torn);
        let mut zero = vec![3, 0, 0, 0, 1, 2, 3, 4];
        zero.extend([0, 0, 0]);
        assert_eq!(classify_tail(&zero), Tail::Torn);
        let mut bad = record(b"abc");
        bad[9] ^= 1;
        assert!(matches!(classify_tail(&bad), Tail::Corrupt(_)));
        let mut then_good = bad.clone();
        then_good.extend(record(b"next"));
        assert!(
            matches!(classify_tail(&then_good), Tail::Corrupt(r) if r.contains("valid record"))
        );
    }

    #[test]
    fn a_damaged_groups_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        let groups = dir.path().join("c.groups.json");
        std::fs::write(&groups, b"\xff\xfe garbage").unwrap();
        std::fs::write(dir.path().join("c.groups.json.prev"), b"").unwrap();
        let err = Log::open(dir.path(), "c")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("c.groups.json is corrupt"), "{err}");
        assert!(err.contains("move it away"), "{err}");
    }
}
