//! Bounds on the listening ports: half-open connections on the actor-transport port are closed
//! within the handshake timeout (5 s) while the node keeps answering and peers still join.

mod common;

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;

#[test]
fn two_thousand_half_open_transport_connections_are_closed_and_the_node_keeps_answering() {
    let n1 = NodeProc::start("po-n1");
    let mut conns: Vec<TcpStream> = (0..2000)
        .map(|i| TcpStream::connect(&n1.listen).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let started = Instant::now();
    // the node answers while they are open
    let tree = n1.dctl(&["tree"]);
    assert!(tree.status.success(), "{}", stderr(&tree));
    // every one of them is closed by the node within the timeout (plus scheduling slack)
    let limit = Duration::from_secs(5) + Duration::from_secs(5);
    let mut open = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let closed = closed_by(c, started + limit);
        if !closed {
            open.push(i);
        }
    }
    let m0 = http_get(&n1.admin, "/metrics");
    assert!(
        open.is_empty(),
        "{} still open after {:?}: {:?} {m0}",
        open.len(),
        started.elapsed(),
        &open[..open.len().min(20)]
    );
    let m = http_get(&n1.admin, "/metrics");
    assert!(
        metric(&m, "draft_transport_connections_refused_total") >= 2000,
        "{m}"
    );
    assert_eq!(metric(&m, "draft_transport_unauthenticated"), 0, "{m}");
    // a real peer still joins and connects
    let n2 = NodeProc::start_with("po-n2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["po-n1", "po-n2"]);
}
