#!/usr/bin/env bash
# Regenerates registry/src/etcd/pb/*.rs (etcd's protobuf messages and tonic server traits) from
# the .proto files in registry/proto/ (etcd's own, as shipped by the etcd-client crate 0.21).
# The generated code is checked in, so a normal build needs no protoc; run this only when the
# protos change. Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
mkdir -p "$gen/src"
cat > "$gen/Cargo.toml" <<'TOML'
[package]
name = "etcdgen"
version = "0.1.0"
edition = "2021"
[dependencies]
tonic-prost-build = "0.14"
[workspace]
TOML
cat > "$gen/src/main.rs" <<'RS'
fn main() {
    let root = std::env::args().nth(1).expect("proto root");
    let out = std::env::args().nth(2).expect("out dir");
    let p = |s: &str| format!("{root}/{s}");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .generate_default_stubs(true)
        .out_dir(&out)
        .compile_protos(
            &[
                p("etcd/api/etcdserverpb/rpc.proto"),
                p("etcd/api/mvccpb/kv.proto"),
                p("etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto"),
                p("etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto"),
            ],
            &[root.clone()],
        )
        .expect("compile protos");
}
RS
cargo run --release --manifest-path "$gen/Cargo.toml" -- "$root/registry/proto" "$root/registry/src/etcd/pb"
# Only annotations: not used by the server.
rm -f "$root/registry/src/etcd/pb/google.api.rs" "$root/registry/src/etcd/pb/grpc.gateway.protoc_gen_openapiv2.options.rs"
