//! The KV store (CP): see the crate docs.
