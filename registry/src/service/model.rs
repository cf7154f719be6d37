//! What the registry stores and the errors it returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the service registry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A registration or query is malformed.
    #[error("invalid registration: {0}")]
    Invalid(String),
    /// No such instance on this node.
    #[error("no instance '{id}' of service '{service}' is registered on this node{hint}")]
    NotFound {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
        /// Where it is registered, when known.
        hint: String,
    },
    /// The instance is larger than gossip can carry ([`super::MAX_INSTANCE_BYTES`]).
    #[error(
        "the instance is {size} bytes as gossiped (its JSON and its key svc:SERVICE:ID); \
         the limit is {limit} bytes"
    )]
    TooLarge {
        /// The instance's JSON and its gossip key, in bytes.
        size: usize,
        /// [`super::MAX_INSTANCE_BYTES`].
        limit: usize,
    },
    /// The registry is not running.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

impl RegistryError {
    /// HTTP status for the admin API.
    pub fn http_status(&self) -> u16 {
        match self {
            RegistryError::Invalid(_) => 400,
            RegistryError::NotFound { .. } => 404,
            RegistryError::TooLarge { .. } => 413,
            RegistryError::Unavailable(_) => 503,
        }
    }
}

/// Health of an instance as registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Serving.
    #[default]
    Passing,
    /// Up, but should not get traffic.
    Warning,
    /// Not serving.
    Critical,
}

/// One registered instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Service name.
    pub service: String,
    /// Instance id, unique within the service.
    pub id: String,
    /// Node the instance is registered on (it lives as long as that node).
    pub node: String,
    /// `HOST:PORT` the instance serves on.
    pub address: String,
    /// e.g. `http`, `grpc`, `tcp`.
    pub protocol: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Health.
    pub health: Health,
}

/// The most bytes an instance may take in gossip: its JSON (as `GET /registry/services` shows
/// it, without spaces) and its key `svc:SERVICE:ID` together. It is what one gossip message
/// can carry ([`runtime::GOSSIP_ENTRY_MAX`]): a larger instance could never reach the other
/// nodes, so it is refused ([`RegistryError::TooLarge`], HTTP 413).
///
/// ```
/// use registry::service::{Registration, RegistryError, MAX_INSTANCE_BYTES};
/// let big = Registration::new("billing", "127.0.0.1:8080").meta("blob", "x".repeat(MAX_INSTANCE_BYTES));
/// let err = big.into_instance("node1").unwrap_err();
/// assert!(matches!(err, RegistryError::TooLarge { limit: MAX_INSTANCE_BYTES, .. }));
/// assert_eq!(err.http_status(), 413);
/// ```
pub const MAX_INSTANCE_BYTES: usize = runtime::GOSSIP_ENTRY_MAX;

impl Instance {
    /// The bytes this instance takes in gossip (see [`MAX_INSTANCE_BYTES`]).
    ///
    /// ```
    /// use registry::service::Registration;
    /// let i = Registration::new("web", "127.0.0.1:80").id("w1").into_instance("n1").unwrap();
    /// assert_eq!(i.gossiped_size(), "svc:web:w1".len() + serde_json::to_string(&i).unwrap().len());
    /// ```
    pub fn gossiped_size(&self) -> usize {
        // (an `Instance` always serializes; were it not to, it would count as too large)
        let json = serde_json::to_string(self).map_or(usize::MAX, |s| s.len());
        key(&self.service, &self.id).len().saturating_add(json)
    }
}

/// A request to register an instance.
///
/// ```
/// use registry::service::Registration;
/// let r = Registration::new("billing", "127.0.0.1:8080").meta("zone", "a").id("billing-1");
/// assert_eq!(r.service, "billing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Service name: 1–128 of letters, digits, `-`, `_`, `.`.
    pub service: String,
    /// `HOST:PORT`.
    pub address: String,
    /// Instance id (default: `{node}-{address}`), same alphabet as the service name.
    #[serde(default)]
    pub id: Option<String>,
    /// Protocol (default `http`).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Health (default passing).
    #[serde(default)]
    pub health: Health,
}

impl Registration {
    /// An instance of `service` at `address`.
    pub fn new(service: impl Into<String>, address: impl Into<String>) -> Self {
        Registration {
            service: service.into(),
            address: address.into(),
            id: None,
            protocol: None,
            metadata: BTreeMap::new(),
            health: Health::Passing,
        }
    }

    /// Set the instance id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Add a metadata entry.
    pub fn meta(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.metadata.insert(k.into(), v.into());
        self
    }

    /// The instance this registration makes on `node`, validated: names, address, defaults
    /// (id `{node}-{address}`, protocol `http`) and its size ([`MAX_INSTANCE_BYTES`]).
    ///
    /// ```
    /// use registry::service::Registration;
    /// let i = Registration::new("web", "127.0.0.1:80").into_instance("n1").unwrap();
    /// assert_eq!((i.id.as_str(), i.protocol.as_str()), ("n1-127.0.0.1-80", "http"));
    /// ```
    pub fn into_instance(self, node: &str) -> Result<Instance, RegistryError> {
        validate_service(&self.service)?;
        validate_address(&self.address)?;
        let id = match self.id {
            Some(id) => id,
            None => format!("{node}-{}", self.address.replace([':', '[', ']'], "-")),
        };
        validate_name("instance id", &id)?;
        let protocol = self.protocol.unwrap_or_else(|| "http".into());
        validate_name("protocol", &protocol)?;
        let instance = Instance {
            service: self.service,
            id,
            node: node.to_string(),
            address: self.address,
            protocol,
            metadata: self.metadata,
            health: self.health,
        };
        let size = instance.gossiped_size();
        if size > MAX_INSTANCE_BYTES {
            return Err(RegistryError::TooLarge {
                size,
                limit: MAX_INSTANCE_BYTES,
            });
        }
        Ok(instance)
    }
}

fn validate_name(what: &str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{what} '{s}' must be 1-128 letters, digits, '-', '_', '.'"
        )))
    }
}

pub(crate) fn validate_service(s: &str) -> Result<(), RegistryError> {
    validate_name("service name", s)
}

fn validate_address(a: &str) -> Result<(), RegistryError> {
    let bad = || {
        RegistryError::Invalid(format!(
            "address '{a}' must be HOST:PORT (e.g. 127.0.0.1:8080)"
        ))
    };
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    Ok(())
}

/// The gossip key of an instance.
pub(crate) fn key(service: &str, id: &str) -> String {
    format!("{}{service}:{id}", KEY_PREFIX)
}

/// Prefix of registry keys in gossip state.
pub(crate) const KEY_PREFIX: &str = "svc:";

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchKind {
    /// It appeared (or was there when the watch started).
    Added,
    /// It was deregistered, or its node died.
    Removed,
    /// Its address, metadata or health changed.
    Changed,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// What happened.
    pub event: WatchKind,
    /// The instance (its last known state, for `removed`).
    pub instance: Instance,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_validated() {
        let ok = Registration::new("billing", "127.0.0.1:80")
            .into_instance("n1")
            .unwrap();
        assert_eq!(ok.id, "n1-127.0.0.1-80");
        assert_eq!(ok.protocol, "http");
        for (svc, addr) in [
            ("", "a:1"),
            ("bad name", "a:1"),
            ("s", "nohost"),
            ("s", "h:0"),
            ("s", ":80"),
            ("s", "h:99999"),
        ] {
            let err = Registration::new(svc, addr)
                .into_instance("n1")
                .unwrap_err();
            assert!(
                matches!(err, RegistryError::Invalid(_)),
                "{svc} {addr}: {err}"
            );
        }
    }

    fn padded(pad: &str) -> Registration {
        Registration::new("s", "h:1").id("i").meta("pad", pad)
    }

    #[test]
    fn an_instance_is_refused_exactly_past_the_gossip_entry_limit() {
        let base = padded("").into_instance("n1").unwrap().gossiped_size();
        let fits = MAX_INSTANCE_BYTES - base;
        let at = padded(&"v".repeat(fits)).into_instance("n1").unwrap();
        assert_eq!(at.gossiped_size(), MAX_INSTANCE_BYTES);
        let err = padded(&"v".repeat(fits + 1))
            .into_instance("n1")
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::TooLarge {
                size: MAX_INSTANCE_BYTES + 1,
                limit: MAX_INSTANCE_BYTES
            }
        );
        assert_eq!(err.http_status(), 413);
        assert!(
            err.to_string().contains("the limit is 64000 bytes"),
            "{err}"
        );
        // the size counts what gossip carries: JSON escapes (6 bytes per control character)
        let escaped = padded(&"\u{1}".repeat(fits / 6 + 1)).into_instance("n1");
        assert!(
            matches!(escaped, Err(RegistryError::TooLarge { .. })),
            "{escaped:?}"
        );
        // an address (or anything else) cannot make it larger either
        let host = format!("{}:80", "h".repeat(MAX_INSTANCE_BYTES));
        let err = Registration::new("s", host).id("i").into_instance("n1");
        assert!(
            matches!(err, Err(RegistryError::TooLarge { .. })),
            "{err:?}"
        );
    }
}
