//! Multi-key transactions and range queries in etcd's model: key ranges, compares, the ops of a
//! transaction's branches and their results. Pure types and the compare / filter / sort logic;
//! the state machine applies them (`store/apply.rs`, `query.rs`).
//!
//! Revisions follow etcd: a transaction (or a delete of several keys, or a lease revoke) that
//! changes anything takes **one** new revision, shared by every key it changes; one that changes
//! nothing takes none.

use serde::{Deserialize, Serialize};

use super::KvEntry;

/// Keys from `key`: the key alone, every key from it on, or up to an exclusive end (as bytes,
/// like etcd's `range_end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// First key.
    pub key: String,
    /// Where the range stops.
    pub end: RangeEnd,
}

/// The end of a [`KeyRange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeEnd {
    /// Only `key` itself.
    Single,
    /// Every key `>= key` (etcd's `range_end = "\0"`).
    ToEnd,
    /// Keys `>= key` and `< end` (bytes).
    Before(Vec<u8>),
}

impl KeyRange {
    /// One key.
    pub fn single(key: impl Into<String>) -> Self {
        KeyRange {
            key: key.into(),
            end: RangeEnd::Single,
        }
    }

    /// etcd's encoding: an empty `range_end` is the key alone, `"\0"` every key from `key`.
    ///
    /// ```
    /// use registry::kv::{KeyRange, RangeEnd};
    /// let r = KeyRange::from_etcd("a/".into(), b"a0");
    /// assert_eq!(r.end, RangeEnd::Before(b"a0".to_vec()));
    /// assert!(r.contains("a/x") && !r.contains("b"));
    /// ```
    pub fn from_etcd(key: String, range_end: &[u8]) -> Self {
        let end = match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::ToEnd,
            e => RangeEnd::Before(e.to_vec()),
        };
        KeyRange { key, end }
    }

    /// Whether `k` is in the range.
    pub fn contains(&self, k: &str) -> bool {
        match &self.end {
            RangeEnd::Single => k == self.key,
            RangeEnd::ToEnd => k >= self.key.as_str(),
            RangeEnd::Before(e) => k >= self.key.as_str() && k.as_bytes() < e.as_slice(),
        }
    }

    /// Whether a scan in key order from `key` can stop at `k`.
    pub(crate) fn past(&self, k: &str) -> bool {
        match &self.end {
            RangeEnd::Single => k != self.key,
            RangeEnd::ToEnd => false,
            RangeEnd::Before(e) => k.as_bytes() >= e.as_slice(),
        }
    }

    /// Whether two ranges share a key (for etcd's "duplicate key in txn" check).
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let hi = |r: &KeyRange| -> Option<Vec<u8>> {
            match &r.end {
                RangeEnd::Single => {
                    let mut k = r.key.as_bytes().to_vec();
                    k.push(0);
                    Some(k)
                }
                RangeEnd::ToEnd => None,
                RangeEnd::Before(e) => Some(e.clone()),
            }
        };
        let below = |a: &[u8], end: &Option<Vec<u8>>| end.as_ref().is_none_or(|e| a < e.as_slice());
        below(self.key.as_bytes(), &hi(other)) && below(other.key.as_bytes(), &hi(self))
    }
}

/// How to order a range's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SortTarget {
    /// By key (the default).
    #[default]
    Key,
    /// By version.
    Version,
    /// By create revision.
    Create,
    /// By mod revision.
    Mod,
    /// By value.
    Value,
}

/// A range query (etcd's `RangeRequest` on the current revision or a past one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeQuery {
    /// The keys.
    pub range: KeyRange,
    /// Most entries to return (0: all).
    pub limit: u64,
    /// Read at this revision (0: the current one).
    pub revision: u64,
    /// Sort by this (ascending unless `descend`); `None`: key order.
    pub sort: Option<(SortTarget, bool)>,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Keep entries with `mod_revision` in `[min, max]` (0: unbounded).
    pub mod_revision: (u64, u64),
    /// Keep entries with `create_revision` in `[min, max]` (0: unbounded).
    pub create_revision: (u64, u64),
}

impl RangeQuery {
    /// Every key of `range` at the current revision, in key order.
    pub fn new(range: KeyRange) -> Self {
        RangeQuery {
            range,
            limit: 0,
            revision: 0,
            sort: None,
            keys_only: false,
            count_only: false,
            mod_revision: (0, 0),
            create_revision: (0, 0),
        }
    }

    /// Filter, sort and cut the entries of the range (in key order, `count` of them before
    /// filters, as etcd counts).
    pub(crate) fn finish(&self, mut kvs: Vec<KvEntry>, revision: u64) -> RangeResult {
        let count = kvs.len() as u64;
        let within = |v: u64, (lo, hi): (u64, u64)| (lo == 0 || v >= lo) && (hi == 0 || v <= hi);
        kvs.retain(|e| {
            within(e.mod_revision, self.mod_revision)
                && within(e.create_revision, self.create_revision)
        });
        if let Some((target, descend)) = self.sort {
            kvs.sort_by(|a, b| {
                let o = match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                };
                if descend {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let mut more = false;
        if self.limit > 0 && kvs.len() as u64 > self.limit {
            kvs.truncate(self.limit as usize);
            more = true;
        }
        if self.count_only {
            kvs.clear();
        } else if self.keys_only {
            for e in &mut kvs {
                e.value.clear();
            }
        }
        RangeResult {
            kvs,
            count,
            more,
            revision,
        }
    }
}

/// The answer to a [`RangeQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResult {
    /// The entries.
    pub kvs: Vec<KvEntry>,
    /// How many keys the range holds (before limit and filters).
    pub count: u64,
    /// Whether the limit cut the result.
    pub more: bool,
    /// The store revision read.
    pub revision: u64,
}

/// What a compare looks at, with the operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The version (0: absent).
    Version(u64),
    /// The create revision (0: absent).
    Create(u64),
    /// The mod revision (0: absent).
    Mod(u64),
    /// The value (an absent key never compares true).
    Value(String),
    /// The lease (0: none).
    Lease(u64),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// One condition of a transaction: every key of the range must satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The keys.
    pub range: KeyRange,
    /// What is compared.
    pub target: CompareTarget,
    /// How.
    pub op: CompareOp,
}

impl Compare {
    /// Whether the compare holds over the entries found in its range (etcd's rule: a missing
    /// single key compares as zero for version, revisions and lease, and fails a value
    /// compare).
    pub fn holds(&self, found: &[KvEntry]) -> bool {
        if found.is_empty() {
            if matches!(self.target, CompareTarget::Value(_)) {
                return false;
            }
            return self.holds_one(None);
        }
        found.iter().all(|e| self.holds_one(Some(e)))
    }

    fn holds_one(&self, e: Option<&KvEntry>) -> bool {
        use std::cmp::Ordering;
        let o: Ordering = match &self.target {
            CompareTarget::Version(v) => e.map_or(0, |e| e.version).cmp(v),
            CompareTarget::Create(v) => e.map_or(0, |e| e.create_revision).cmp(v),
            CompareTarget::Mod(v) => e.map_or(0, |e| e.mod_revision).cmp(v),
            CompareTarget::Lease(v) => e.and_then(|e| e.lease).unwrap_or(0).cmp(v),
            CompareTarget::Value(v) => match e {
                Some(e) => e.value.as_bytes().cmp(v.as_bytes()),
                None => return false,
            },
        };
        match self.op {
            CompareOp::Equal => o == Ordering::Equal,
            CompareOp::Greater => o == Ordering::Greater,
            CompareOp::Less => o == Ordering::Less,
            CompareOp::NotEqual => o != Ordering::Equal,
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Read (at the current revision, seeing the branch's earlier writes).
    Range(RangeQuery),
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value (`None`: keep the current one; the key must exist).
        value: Option<String>,
        /// The lease (`None`: keep the current one; `Some(None)`: no lease).
        lease: Option<Option<u64>>,
    },
    /// Delete the keys of a range.
    Delete(KeyRange),
}

/// A transaction: if every compare holds, the `success` ops run, else the `failure` ops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The conditions.
    pub compares: Vec<Compare>,
    /// Run when all hold.
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// Keys and values that a transaction writes (for the batcher's size accounting).
    pub(crate) fn payload_bytes(&self) -> usize {
        self.success
            .iter()
            .chain(&self.failure)
            .map(|op| match op {
                TxnOp::Put { key, value, .. } => key.len() + value.as_ref().map_or(0, |v| v.len()),
                TxnOp::Delete(r) | TxnOp::Range(RangeQuery { range: r, .. }) => r.key.len(),
            })
            .sum()
    }
}

/// The result of one [`TxnOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// A read.
    Range(RangeResult),
    /// A write, with the entry before it.
    Put {
        /// The previous entry.
        prev: Option<KvEntry>,
    },
    /// A delete, with the removed entries.
    Delete {
        /// The removed entries, in key order.
        prev: Vec<KvEntry>,
    },
}

/// The result of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    /// Whether the compares held (the `success` branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: u64,
    /// One result per op of the branch that ran.
    pub responses: Vec<TxnOpResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, value: &str, create: u64, m: u64, version: u64) -> KvEntry {
        KvEntry {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: m,
            version,
            lease: None,
        }
    }

    #[test]
    fn ranges_follow_etcd_range_end() {
        let single = KeyRange::from_etcd("a".into(), b"");
        assert!(single.contains("a") && !single.contains("ab"));
        let all = KeyRange::from_etcd("\0".into(), b"\0");
        assert!(all.contains("a") && all.contains("zzz"));
        let prefix = KeyRange::from_etcd("a/".into(), b"a0");
        assert!(prefix.contains("a/") && prefix.contains("a/z") && !prefix.contains("a0"));
        assert!(prefix.past("a0") && !prefix.past("a/b"));
        // An end below the key is an empty range, as in etcd.
        let empty = KeyRange::from_etcd("b".into(), b"a");
        assert!(!empty.contains("a") && !empty.contains("b"));
    }

    #[test]
    fn overlapping_ranges_are_found() {
        let k = |s: &str| KeyRange::single(s);
        assert!(k("a").overlaps(&k("a")));
        assert!(!k("a").overlaps(&k("b")));
        let p = KeyRange::from_etcd("a/".into(), b"a0");
        assert!(p.overlaps(&k("a/x")) && k("a/x").overlaps(&p));
        assert!(!p.overlaps(&k("b")));
        assert!(KeyRange::from_etcd("a".into(), b"\0").overlaps(&k("z")));
    }

    #[test]
    fn compares_on_a_missing_key_use_zero_and_values_fail() {
        let c = |target, op| Compare {
            range: KeyRange::single("k"),
            target,
            op,
        };
        assert!(c(CompareTarget::Create(0), CompareOp::Equal).holds(&[]));
        assert!(c(CompareTarget::Version(0), CompareOp::Equal).holds(&[]));
        assert!(!c(CompareTarget::Value(String::new()), CompareOp::Equal).holds(&[]));
        assert!(!c(CompareTarget::Value("x".into()), CompareOp::NotEqual).holds(&[]));
        let found = [e("k", "b", 3, 5, 2)];
        assert!(c(CompareTarget::Mod(5), CompareOp::Equal).holds(&found));
        assert!(c(CompareTarget::Mod(4), CompareOp::Greater).holds(&found));
        assert!(c(CompareTarget::Value("c".into()), CompareOp::Less).holds(&found));
        assert!(c(CompareTarget::Version(1), CompareOp::NotEqual).holds(&found));
        assert!(!c(CompareTarget::Create(3), CompareOp::NotEqual).holds(&found));
    }

    #[test]
    fn queries_filter_sort_limit_and_count_like_etcd() {
        let kvs = vec![
            e("a", "3", 4, 4, 1),
            e("b", "1", 2, 6, 3),
            e("c", "2", 5, 5, 1),
        ];
        let mut q = RangeQuery::new(KeyRange::from_etcd("a".into(), b"\0"));
        q.sort = Some((SortTarget::Create, false));
        q.limit = 1;
        let r = q.finish(kvs.clone(), 9);
        assert_eq!((r.count, r.more, r.kvs[0].key.as_str()), (3, true, "b"));
        q.sort = Some((SortTarget::Create, true));
        q.create_revision = (0, 4);
        let r = q.finish(kvs.clone(), 9);
        assert_eq!(r.kvs[0].key, "a", "newest created at or below 4");
        let mut q = RangeQuery::new(KeyRange::from_etcd("a".into(), b"\0"));
        q.count_only = true;
        let r = q.finish(kvs.clone(), 9);
        assert_eq!((r.count, r.kvs.len(), r.more), (3, 0, false));
        q.count_only = false;
        q.keys_only = true;
        let r = q.finish(kvs, 9);
        assert!(r.kvs.iter().all(|e| e.value.is_empty()) && r.kvs.len() == 3);
    }
}
