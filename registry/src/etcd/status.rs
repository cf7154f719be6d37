//! KV errors as the gRPC statuses etcd answers (codes and messages of etcd's `rpctypes`), and
//! the checks of etcd's request fields that our store is stricter about (UTF-8).

use tonic::{Code, Status};

use crate::kv::KvError;

/// A KV error as the gRPC status etcd would give.
///
/// ```
/// use registry::kv::KvError;
/// let s = registry::etcd::to_status(KvError::Compacted { from: 3, oldest: 9 });
/// assert_eq!(s.code(), tonic::Code::OutOfRange);
/// ```
pub fn to_status(e: KvError) -> Status {
    const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
    match e {
        KvError::Compacted { .. } => Status::new(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        KvError::Invalid(m) if m.starts_with(FUTURE) => Status::new(Code::OutOfRange, FUTURE),
        KvError::Invalid(m) => Status::invalid_argument(m),
        KvError::TooLarge { what, size, limit } => Status::invalid_argument(format!(
            "etcdserver: request is too large: the {what} is {size} bytes, this store's limit is {limit}"
        )),
        KvError::Lease(m) if m.starts_with("etcdserver: key not found") => {
            Status::invalid_argument("etcdserver: key not found")
        }
        KvError::Lease(m) if m.contains("compacted") => Status::new(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        KvError::Lease(m) if m.starts_with(FUTURE) => Status::new(Code::OutOfRange, FUTURE),
        KvError::Lease(m) if m.contains("not found") => {
            Status::not_found("etcdserver: requested lease not found")
        }
        KvError::Lease(m) => Status::failed_precondition(m),
        KvError::NotFound(k) => Status::not_found(format!("key '{k}' not found")),
        KvError::CompareFailed { key, detail } => {
            Status::failed_precondition(format!("compare failed for '{key}': {detail}"))
        }
        KvError::NotLeader { .. } => Status::unavailable("etcdserver: no leader"),
        KvError::NoQuorum(m) => Status::unavailable(format!("etcdserver: request timed out ({m})")),
        KvError::Unavailable(m) => Status::unavailable(m),
        KvError::ForeignStore { .. } => Status::failed_precondition(e.to_string()),
        KvError::Storage(m) => Status::internal(m),
    }
}

/// A key (or another UTF-8 field) from etcd's bytes.
pub(crate) fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, Status> {
    String::from_utf8(bytes).map_err(|_| {
        Status::invalid_argument(format!(
            "this store keeps UTF-8 {what}s only; the {what} is not valid UTF-8"
        ))
    })
}

/// etcd's answer to an empty key.
pub(crate) fn empty_key() -> Status {
    Status::invalid_argument("etcdserver: key is not provided")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_etcds_codes() {
        let c = |e| to_status(e).code();
        assert_eq!(
            c(KvError::Lease(
                "lease 5 not found (expired or revoked)".into()
            )),
            Code::NotFound
        );
        assert_eq!(
            c(KvError::Lease("etcdserver: key not found: 'k'".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            c(KvError::Invalid(
                "etcdserver: mvcc: required revision is a future revision (9 > 3)".into()
            )),
            Code::OutOfRange
        );
        assert_eq!(c(KvError::NoQuorum("x".into())), Code::Unavailable);
        assert_eq!(
            c(KvError::TooLarge {
                what: "key".into(),
                size: 2000,
                limit: 1024
            }),
            Code::InvalidArgument
        );
        assert!(utf8(vec![0xff], "key").is_err());
    }
}
