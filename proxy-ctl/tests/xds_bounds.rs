//! Bad input on the xDS port gets a clear gRPC error or is bounded, and the server keeps
//! serving: an unknown type URL, garbage bytes, a client that never ACKs, more streams than
//! allowed (1 024 idle ones first).

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DiscoveryRequest,
    DiscoveryResponse,
};
use proxy_ctl::{
    snapshot::{build, Kind, SnapshotCell, INGRESS},
    xds::{
        server::{bind, serve, Ads},
        status::XdsStatus,
        MAX_STREAMS,
    },
    PathMatch, Route,
};
use registry::service::{Health, Instance};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{transport::Channel, Code, Streaming};

struct Server {
    addr: std::net::SocketAddr,
    cell: SnapshotCell,
    status: XdsStatus,
    _task: tokio::task::JoinHandle<()>,
}

fn inst(port: u16) -> Instance {
    Instance {
        service: "web".into(),
        id: format!("w{port}"),
        node: "n1".into(),
        address: format!("127.0.0.1:{port}"),
        protocol: "http".into(),
        metadata: Default::default(),
        health: Health::Passing,
    }
}

fn routes() -> Vec<Route> {
    vec![Route::new("web", PathMatch::Prefix("/".into()), "web")]
}

async fn server() -> Server {
    let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let cell = SnapshotCell::default();
    cell.publish(build(&[inst(1)], &routes()));
    let status = XdsStatus::default();
    let task = serve(listener, Ads::new(cell.clone(), status.clone())).unwrap();
    Server {
        addr,
        cell,
        status,
        _task: task,
    }
}

async fn client(addr: std::net::SocketAddr) -> AggregatedDiscoveryServiceClient<Channel> {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AggregatedDiscoveryServiceClient::new(ch)
}

type Stream = (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>);

async fn open(c: &mut AggregatedDiscoveryServiceClient<Channel>) -> Result<Stream, tonic::Status> {
    let (tx, rx) = mpsc::channel(16);
    let resp = c
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?;
    Ok((tx, resp.into_inner()))
}

fn req(kind: Kind, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: kind.type_url().into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..DiscoveryRequest::default()
    }
}

async fn next(s: &mut Streaming<DiscoveryResponse>) -> Result<DiscoveryResponse, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
        Ok(Ok(Some(r))) => Ok(r),
        Ok(Ok(None)) => panic!("the stream ended"),
        Ok(Err(e)) => Err(e),
        Err(_) => panic!("no response within 10 s"),
    }
}

/// Wait (bounded) until `cond` holds.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The server still answers a fresh client with the clusters.
async fn still_serves(addr: std::net::SocketAddr) {
    let mut c = client(addr).await;
    let (tx, mut rx) = open(&mut c).await.expect("a new stream");
    tx.send(req(Kind::Cluster, &[])).await.unwrap();
    let r = next(&mut rx).await.expect("CDS");
    assert_eq!(r.type_url, Kind::Cluster.type_url());
    assert_eq!(r.resources.len(), 1);
}

#[tokio::test]
async fn an_unknown_type_url_ends_the_stream_with_invalid_argument() {
    let s = server().await;
    let mut c = client(s.addr).await;
    let (tx, mut rx) = open(&mut c).await.unwrap();
    let mut bad = req(Kind::Cluster, &[]);
    bad.type_url = "type.googleapis.com/envoy.config.secret.v3.Secret".into();
    tx.send(bad).await.unwrap();
    let err = next(&mut rx).await.expect_err("an error status");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("unknown type URL"),
        "{}",
        err.message()
    );
    still_serves(s.addr).await;
}

#[tokio::test]
async fn garbage_on_the_port_is_dropped_and_the_server_keeps_serving() {
    let s = server().await;
    let addr = s.addr;
    tokio::task::spawn_blocking(move || {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
            &[0u8; 4096][..],
        ] {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = c.write_all(garbage);
            let mut buf = Vec::new();
            // the server answers with an error or closes; either way the read ends
            let _ = c.read_to_end(&mut buf);
        }
    })
    .await
    .unwrap();
    still_serves(s.addr).await;
}

#[tokio::test]
async fn a_client_that_never_acks_gets_one_response_per_type() {
    let s = server().await;
    let mut c = client(s.addr).await;
    let (tx, mut rx) = open(&mut c).await.unwrap();
    for (k, names) in [
        (Kind::Cluster, vec![]),
        (Kind::Endpoints, vec!["web"]),
        (Kind::Listener, vec![]),
        (Kind::Routes, vec![INGRESS]),
    ] {
        tx.send(req(k, &names)).await.unwrap();
    }
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(next(&mut rx).await.unwrap());
    }
    // 50 new snapshots, none ACKed: nothing more is sent...
    for port in 2..52 {
        s.cell.publish(build(&[inst(1), inst(port)], &routes()));
    }
    // ... until the client ACKs CDS: then CDS (only) with the latest snapshot's version
    let cds = first
        .iter()
        .find(|r| r.type_url == Kind::Cluster.type_url())
        .unwrap();
    let mut ack = req(Kind::Cluster, &[]);
    ack.version_info = cds.version_info.clone();
    ack.response_nonce = cds.nonce.clone();
    let mut api = inst(999);
    api.service = "api".into();
    s.cell.publish(build(&[inst(1), api], &routes()));
    let latest = s.cell.get();
    tx.send(ack).await.unwrap();
    let r = next(&mut rx).await.unwrap();
    assert_eq!(r.type_url, Kind::Cluster.type_url());
    assert_eq!(r.version_info, latest.clusters.version);
    let status = s.status.clone();
    let total = || status.json()["responses_total"].as_u64().unwrap();
    wait_for("the ACK's response counted", || total() >= 5).await;
    assert_eq!(total(), 5, "4 first responses and the one after the ACK");
}

#[tokio::test]
async fn streams_are_bounded_and_the_server_keeps_serving() {
    let s = server().await;
    let mut c = client(s.addr).await;
    let mut idle = Vec::new();
    for _ in 0..MAX_STREAMS {
        idle.push(open(&mut c).await.expect("a stream under the limit"));
    }
    assert_eq!(s.status.open_streams(), MAX_STREAMS);
    let mut other = client(s.addr).await;
    let err = open(&mut other).await.expect_err("one stream too many");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("too many xDS streams"),
        "{}",
        err.message()
    );
    assert_eq!(s.status.json()["streams_refused_total"], 1);
    drop(idle);
    let status = s.status.clone();
    wait_for("the idle streams to close", || status.open_streams() == 0).await;
    still_serves(s.addr).await;
}
