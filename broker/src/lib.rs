//! # broker: CloudEvents broker as an actor group (see the crate README).
