//! Validation of requests (limits on keys, values and TTLs) and the mapping of Raft's write
//! errors and refusals onto [`KvError`].

use openraft::error::{ClientWriteError, RaftError};

use super::{
    CmdResult, Command, Expect, KvError, KvNode, NodeId, MAX_KEY_BYTES, MAX_TTL_SECS,
    MAX_VALUE_BYTES,
};

pub(crate) fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("the key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge {
            what: "key".into(),
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn validate_value(value: &str) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::TooLarge {
            what: "value".into(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn validate(cmd: &Command) -> Result<(), KvError> {
    match cmd {
        Command::Put { key, value, .. } => {
            validate_key(key)?;
            validate_value(value)
        }
        Command::Delete { key } => validate_key(key),
        Command::Cas {
            key, expect, new, ..
        } => {
            validate_key(key)?;
            if let Expect::Value(Some(v)) = expect {
                validate_value(v)?;
            }
            if let Some(v) = new {
                validate_value(v)?;
            }
            Ok(())
        }
        Command::Batch(_) => Err(KvError::Invalid(
            "batches are built by the leader, not sent by clients".into(),
        )),
        Command::Grant { ttl_ms, .. } => {
            if *ttl_ms == 0 || *ttl_ms > MAX_TTL_SECS * 1000 {
                return Err(KvError::Invalid(format!(
                    "a lease TTL must be between 1 ms and {MAX_TTL_SECS} s"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn write_result(r: CmdResult) -> Result<CmdResult, KvError> {
    match r {
        CmdResult::Refused(m) => Err(KvError::Lease(m)),
        other => Ok(other),
    }
}

/// A Raft write error as a KV error (a redirect becomes [`KvError::NotLeader`]).
pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, KvNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => KvError::NotLeader {
            leader: f.leader_node.map(|n| n.name),
        },
        e => KvError::Unavailable(e.to_string()),
    }
}
