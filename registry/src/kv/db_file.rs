//! Opening one of the KV's redb files so that damage done while the node was down is found
//! rather than trusted.
//!
//! * An existing file is opened, never initialized: redb makes a new, empty database of an
//!   empty file, which would silently reset a truncated one.
//! * Every open verifies the checksum of every page of the committed trees (redb's integrity
//!   check), not only after a crash: a plain open trusts a cleanly closed file.
//! * redb repairs a file whose latest commit does not verify by going back to the commit before.
//!   A process crash never leaves such a file (redb writes a commit's pages before its header, and
//!   the page cache keeps both); damage does, and going back would drop an acknowledged log entry
//!   or vote. So that repair is refused: the file is reported as corrupt.
//! * redb checks that only damage can fail panic in debug builds; the open treats a panic as
//!   corruption too (the workspace also builds redb without debug assertions, as in release).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
};

use redb::{Database, DatabaseError, RepairSession, StorageError};

/// Why a database file did not open.
#[derive(Debug)]
pub(crate) enum DbOpenError {
    /// The file is damaged; the detail says how (the caller names the file).
    Corrupt(String),
    /// Anything else: permissions, another process holding it, I/O.
    Other(String),
}

/// redb reports a repair's progress to the callback at 0.0 (start), 0.3 (only when the latest
/// commit failed to verify, before falling back to the one before it), 0.6 and 0.9.
fn is_rollback(session: &RepairSession) -> bool {
    session.progress() > 0.0 && session.progress() < 0.5
}

/// Open (or, when it does not exist, create) the database at `path`, verified as above.
pub(crate) fn open_checked(path: &Path) -> Result<Database, DbOpenError> {
    let exists = match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(DbOpenError::Other(e.to_string())),
    };
    let mut builder = Database::builder();
    builder.set_check_integrity_on_open(true);
    builder.set_repair_callback(|s: &mut RepairSession| {
        if is_rollback(s) {
            s.abort();
        }
    });
    let opened = catch_unwind(AssertUnwindSafe(|| {
        if exists {
            builder.open(path)
        } else {
            builder.create(path)
        }
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(e)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "redb panicked while reading it".into());
            Err(DbOpenError::Corrupt(why))
        }
    }
}

fn classify(e: DatabaseError) -> DbOpenError {
    match e {
        DatabaseError::RepairAborted => {
            DbOpenError::Corrupt("its latest commit does not verify (checksum mismatch)".into())
        }
        DatabaseError::Storage(StorageError::Io(io))
            if !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            DbOpenError::Other(io.to_string())
        }
        DatabaseError::Storage(StorageError::Io(io)) => DbOpenError::Corrupt(io.to_string()),
        DatabaseError::Storage(StorageError::Corrupted(why)) => DbOpenError::Corrupt(why),
        DatabaseError::DatabaseAlreadyOpen => {
            DbOpenError::Other("another process has it open (is this node already running?)".into())
        }
        other => DbOpenError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    fn write(db: &Database, n: u64) {
        let txn = db.begin_write().expect("begin");
        {
            let mut t = txn.open_table(T).expect("table");
            for i in 0..n {
                t.insert(i, vec![i as u8; 300].as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    #[test]
    fn a_fresh_file_is_created_and_reopened_with_its_data() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("x.redb");
        write(&open_checked(&p).expect("create"), 10);
        let db = open_checked(&p).expect("reopen");
        let txn = db.begin_read().expect("read");
        assert_eq!(
            txn.open_table(T)
                .expect("t")
                .get(3)
                .expect("get")
                .map(|v| v.value().to_vec()),
            Some(vec![3; 300])
        );
    }

    #[test]
    fn an_emptied_file_is_corrupt_not_a_new_database() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("x.redb");
        write(&open_checked(&p).expect("create"), 10);
        std::fs::write(&p, b"").expect("truncate");
        assert!(matches!(open_checked(&p), Err(DbOpenError::Corrupt(_))));
    }

    #[test]
    fn garbage_and_flipped_bytes_are_corrupt() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("x.redb");
        write(&open_checked(&p).expect("create"), 200);
        let good = std::fs::read(&p).expect("read");
        std::fs::write(&p, vec![0x5a; good.len()]).expect("garbage");
        assert!(matches!(open_checked(&p), Err(DbOpenError::Corrupt(_))));
        // A flipped byte in every 4 KiB page in turn: each open either refuses the file as
        // corrupt or (the byte was in unused space) reads back every value intact.
        let mut refused = 0;
        for at in (0..good.len()).step_by(4096).map(|p| p + 2000) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&p, &bad).expect("flip");
            match open_checked(&p) {
                Err(DbOpenError::Corrupt(_)) => refused += 1,
                Err(DbOpenError::Other(e)) => panic!("flip at {at}: not reported as corrupt: {e}"),
                Ok(db) => {
                    let txn = db.begin_read().expect("read");
                    let t = txn.open_table(T).expect("t");
                    for i in 0..200u64 {
                        let v = t.get(i).expect("get").map(|v| v.value().to_vec());
                        assert_eq!(v, Some(vec![i as u8; 300]), "flip at {at}, key {i}");
                    }
                }
            }
        }
        assert!(refused > 0, "no flipped byte was noticed");
    }
}
