//! Applying one command to the state machine's tables inside a write transaction: puts,
//! deletes, lease revokes, transactions, and the watch history they record. No I/O beyond the
//! transaction it is handed.

use super::*;

pub(super) struct Tables<'t> {
    pub(super) data: Table<'t, &'static str, &'static [u8]>,
    pub(super) leases: Table<'t, u64, &'static [u8]>,
    pub(super) history: Table<'t, u64, &'static [u8]>,
    /// Changes of the command being applied (one revision for all of them).
    pub(super) pending: Vec<Change>,
    /// Whether the command being applied took a new revision already.
    pub(super) bumped: bool,
    /// The first revision the history keeps (see `compact_revision`).
    pub(super) first: u64,
}

/// etcd's compact revision for a history that keeps revisions from `first` on (0: never
/// compacted).
pub(crate) fn compact_revision(first: u64) -> u64 {
    if first <= 1 {
        0
    } else {
        first
    }
}

/// The revision of the command being applied: a new one at its first change.
pub(super) fn bump(t: &mut Tables<'_>, rev: &mut u64) -> u64 {
    if !t.bumped {
        *rev += 1;
        t.bumped = true;
    }
    *rev
}

/// Write the changes of the command just applied to the history, under its revision.
pub(super) fn flush(t: &mut Tables<'_>, rev: u64) -> Result<(), String> {
    if t.bumped {
        let changes = std::mem::take(&mut t.pending);
        t.history
            .insert(rev, enc(&changes)?.as_slice())
            .map_err(s)?;
        t.bumped = false;
    }
    Ok(())
}

pub(super) fn get_entry(
    t: &Table<'_, &'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<KvEntry>, String> {
    match t.get(key).map_err(s)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

pub(super) fn get_lease(
    t: &Table<'_, u64, &'static [u8]>,
    id: u64,
) -> Result<Option<Lease>, String> {
    match t.get(id).map_err(s)? {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

pub(super) fn record(t: &mut Tables<'_>, change: Change) {
    t.pending.push(change);
}

pub(super) fn detach(t: &mut Tables<'_>, lease: Option<u64>, key: &str) -> Result<(), String> {
    if let Some(id) = lease {
        if let Some(mut l) = get_lease(&t.leases, id)? {
            l.keys.retain(|k| k != key);
            t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
        }
    }
    Ok(())
}

pub(super) fn do_put(
    t: &mut Tables<'_>,
    key: String,
    value: String,
    lease: Option<u64>,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    let mut new_lease = None;
    if let Some(id) = lease {
        match get_lease(&t.leases, id)? {
            Some(l) => new_lease = Some(l),
            None => {
                return Ok(CmdResult::Refused(format!(
                    "lease {id} not found (expired or revoked)"
                )))
            }
        }
    }
    let prev = get_entry(&t.data, &key)?;
    let r = bump(t, rev);
    let entry = KvEntry {
        key: key.clone(),
        value,
        create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(r),
        mod_revision: r,
        version: prev.as_ref().map(|p| p.version + 1).unwrap_or(1),
        lease,
    };
    let prev_lease = prev.as_ref().and_then(|p| p.lease);
    if prev_lease != lease {
        detach(t, prev_lease, &key)?;
        if let (Some(id), Some(mut l)) = (lease, new_lease) {
            l.keys.push(key.clone());
            t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
        }
    }
    t.data
        .insert(key.as_str(), enc(&entry)?.as_slice())
        .map_err(s)?;
    record(
        t,
        Change {
            kind: EventKind::Put,
            kv: entry,
            prev: prev.clone(),
        },
    );
    Ok(CmdResult::Put { revision: r, prev })
}

pub(super) fn do_delete(
    t: &mut Tables<'_>,
    key: String,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    let prev = match t.data.remove(key.as_str()).map_err(s)? {
        Some(v) => Some(dec::<KvEntry>(v.value())?),
        None => None,
    };
    if let Some(p) = &prev {
        let r = bump(t, rev);
        detach(t, p.lease, &key)?;
        record(
            t,
            Change {
                kind: EventKind::Delete,
                kv: KvEntry {
                    key,
                    value: String::new(),
                    create_revision: 0,
                    mod_revision: r,
                    version: 0,
                    lease: None,
                },
                prev: prev.clone(),
            },
        );
    }
    Ok(CmdResult::Delete {
        revision: *rev,
        prev,
    })
}

pub(super) fn do_revoke(
    t: &mut Tables<'_>,
    id: u64,
    rev: &mut u64,
) -> Result<Option<Lease>, String> {
    let lease = match t.leases.remove(id).map_err(s)? {
        Some(v) => dec::<Lease>(v.value())?,
        None => return Ok(None),
    };
    for key in &lease.keys {
        if get_entry(&t.data, key)?.and_then(|e| e.lease) == Some(id) {
            do_delete(t, key.clone(), rev)?;
        }
    }
    Ok(Some(lease))
}

/// etcd's message for a revision above the current one.
pub(crate) const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
/// etcd's message for a revision below the compact revision.
pub(crate) const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// The entries of a key range, in key order.
pub(crate) fn scan<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    r: &KeyRange,
) -> Result<Vec<KvEntry>, String> {
    let mut out = Vec::new();
    if r.end == RangeEnd::Single {
        if let Some(v) = t.get(r.key.as_str()).map_err(s)? {
            out.push(dec(v.value())?);
        }
        return Ok(out);
    }
    for item in t.range::<&str>(r.key.as_str()..).map_err(s)? {
        let (k, v) = item.map_err(s)?;
        if r.past(k.value()) {
            break;
        }
        out.push(dec(v.value())?);
    }
    Ok(out)
}

/// A transaction: compares, then one branch, all at one revision. A put naming a missing
/// lease, or keeping the value or lease of a missing key, refuses the whole transaction
/// before anything changes (as etcd does).
pub(super) fn do_txn(t: &mut Tables<'_>, txn: Txn, rev: &mut u64) -> Result<CmdResult, String> {
    let mut succeeded = true;
    for c in &txn.compares {
        if !c.holds(&scan(&t.data, &c.range)?) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { txn.success } else { txn.failure };
    for op in &ops {
        if let TxnOp::Put { key, value, lease } = op {
            if let Some(Some(id)) = lease {
                if get_lease(&t.leases, *id)?.is_none() {
                    return Ok(CmdResult::Refused(format!(
                        "lease {id} not found (expired or revoked)"
                    )));
                }
            }
            if (value.is_none() || lease.is_none()) && get_entry(&t.data, key)?.is_none() {
                return Ok(CmdResult::Refused(format!(
                    "{KEY_NOT_FOUND}: '{key}' (keeping the value or lease needs an existing key)"
                )));
            }
        }
    }
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            TxnOp::Range(q) => {
                let kvs = scan(&t.data, &q.range)?;
                responses.push(TxnOpResult::Range(q.finish(kvs, *rev)));
            }
            TxnOp::Put { key, value, lease } => {
                let cur = get_entry(&t.data, &key)?;
                let value = match value {
                    Some(v) => v,
                    None => cur.as_ref().map(|c| c.value.clone()).unwrap_or_default(),
                };
                let lease = lease.unwrap_or_else(|| cur.and_then(|c| c.lease));
                match do_put(t, key, value, lease, rev)? {
                    CmdResult::Put { prev, .. } => responses.push(TxnOpResult::Put { prev }),
                    other => return Ok(other),
                }
            }
            TxnOp::Delete(r) => {
                let keys: Vec<String> = scan(&t.data, &r)?.into_iter().map(|e| e.key).collect();
                let mut prev = Vec::with_capacity(keys.len());
                for k in keys {
                    if let CmdResult::Delete { prev: Some(p), .. } = do_delete(t, k, rev)? {
                        prev.push(p);
                    }
                }
                responses.push(TxnOpResult::Delete { prev });
            }
        }
    }
    Ok(CmdResult::Txn(TxnResult {
        succeeded,
        revision: *rev,
        responses,
    }))
}

/// etcd's message for a put that keeps the value or lease of a missing key.
pub(crate) const KEY_NOT_FOUND: &str = "etcdserver: key not found";

/// Apply one proposal once: a request id seen before gets its first result again.
pub(super) fn apply_proposal(
    t: &mut Tables<'_>,
    dedup: &mut Table<'_, &'static [u8], &'static [u8]>,
    p: Proposal,
    index: u64,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    let key = p.request.map(|(c, q)| {
        let mut k = c.to_be_bytes().to_vec();
        k.extend_from_slice(&q.to_be_bytes());
        k
    });
    if let Some(k) = &key {
        if let Some(v) = dedup.get(k.as_slice()).map_err(s)? {
            return Ok(dec::<(u64, CmdResult)>(v.value())?.1);
        }
    }
    let r = apply_cmd(t, p.cmd, index, rev)?;
    flush(t, *rev)?;
    if let Some(k) = key {
        let b = enc(&(index, r.clone()))?;
        dedup.insert(k.as_slice(), b.as_slice()).map_err(s)?;
    }
    Ok(r)
}

pub(super) fn apply_cmd(
    t: &mut Tables<'_>,
    cmd: Command,
    index: u64,
    rev: &mut u64,
) -> Result<CmdResult, String> {
    match cmd {
        Command::Put { key, value, lease } => do_put(t, key, value, lease, rev),
        Command::Delete { key } => do_delete(t, key, rev),
        Command::Cas {
            key,
            expect,
            new,
            lease,
        } => {
            let current = get_entry(&t.data, &key)?;
            let ok = match &expect {
                Expect::Value(v) => current.as_ref().map(|c| &c.value) == v.as_ref(),
                Expect::Revision(r) => current.as_ref().map(|c| c.mod_revision).unwrap_or(0) == *r,
            };
            if !ok {
                return Ok(CmdResult::Cas {
                    ok: false,
                    revision: *rev,
                    current,
                });
            }
            let r = match new {
                Some(v) => do_put(t, key, v, lease, rev)?,
                None => do_delete(t, key, rev)?,
            };
            if let CmdResult::Refused(m) = r {
                return Ok(CmdResult::Refused(m));
            }
            Ok(CmdResult::Cas {
                ok: true,
                revision: *rev,
                current,
            })
        }
        Command::Grant { ttl_ms, now_ms } => {
            let l = Lease {
                ttl_ms,
                expires_at_ms: now_ms.saturating_add(ttl_ms),
                keys: Vec::new(),
            };
            t.leases.insert(index, enc(&l)?.as_slice()).map_err(s)?;
            Ok(CmdResult::Lease { id: index, ttl_ms })
        }
        Command::KeepAlive { id, now_ms } => match get_lease(&t.leases, id)? {
            Some(mut l) => {
                l.expires_at_ms = now_ms.saturating_add(l.ttl_ms);
                t.leases.insert(id, enc(&l)?.as_slice()).map_err(s)?;
                Ok(CmdResult::Lease {
                    id,
                    ttl_ms: l.ttl_ms,
                })
            }
            None => Ok(CmdResult::Refused(format!(
                "lease {id} not found (expired or revoked)"
            ))),
        },
        Command::Revoke { id } => match do_revoke(t, id, rev)? {
            Some(l) => Ok(CmdResult::Lease {
                id,
                ttl_ms: l.ttl_ms,
            }),
            None => Ok(CmdResult::Refused(format!(
                "lease {id} not found (expired or revoked)"
            ))),
        },
        Command::Expire { now_ms } => {
            let mut expired = Vec::new();
            for item in t.leases.iter().map_err(s)? {
                let (k, v) = item.map_err(s)?;
                if dec::<Lease>(v.value())?.expires_at_ms <= now_ms {
                    expired.push(k.value());
                }
            }
            for id in expired {
                do_revoke(t, id, rev)?;
            }
            Ok(CmdResult::None)
        }
        // Batches are only built by the leader's batcher, never nested.
        Command::Batch(_) => Ok(CmdResult::Refused("a batch cannot hold a batch".into())),
        Command::Txn(txn) => do_txn(t, txn, rev),
        Command::Compact { revision } => {
            if revision > *rev {
                Ok(CmdResult::Refused(format!(
                    "{FUTURE_REV}: {revision} > {}",
                    *rev
                )))
            } else if revision <= compact_revision(t.first) {
                Ok(CmdResult::Refused(format!(
                    "{COMPACTED}: {revision} <= {}",
                    compact_revision(t.first)
                )))
            } else {
                t.first = revision;
                Ok(CmdResult::None)
            }
        }
    }
}
