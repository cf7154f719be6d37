//! etcd's protobuf messages and tonic server traits, generated from the `.proto` files in
//! `registry/proto/` (etcd's own, as shipped by the `etcd-client` crate 0.21) by
//! `scripts/gen-etcd-proto.sh`, and checked in so that building needs no `protoc`.
#![allow(missing_docs, clippy::all, rustdoc::all)]

pub mod mvccpb {
    include!("pb/mvccpb.rs");
}
pub mod authpb {
    include!("pb/authpb.rs");
}
pub mod etcdserverpb {
    include!("pb/etcdserverpb.rs");
}
pub mod v3lockpb {
    include!("pb/v3lockpb.rs");
}
pub mod v3electionpb {
    include!("pb/v3electionpb.rs");
}
