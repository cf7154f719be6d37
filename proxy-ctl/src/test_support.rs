//! Fixtures the unit tests of several modules share.

use registry::service::{Health, Instance};

/// A passing HTTP instance of `service` on node `n1`, in zone `a`.
pub(crate) fn inst(service: &str, id: &str, addr: &str) -> Instance {
    Instance {
        service: service.into(),
        id: id.into(),
        node: "n1".into(),
        address: addr.into(),
        protocol: "http".into(),
        metadata: [("zone".to_string(), "a".to_string())].into(),
        health: Health::Passing,
    }
}
