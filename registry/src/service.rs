//! The service registry (AP): see the crate docs.
