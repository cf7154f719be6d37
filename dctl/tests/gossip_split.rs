//! A new node's catch-up over sealed gossip when chitchat's messages do not fit in one sealed
//! datagram, so that the seal must split them and the receiver put them back together.
//!
//! With the default size (65 507 bytes) a message is split only when chitchat fills its
//! datagram to within the seal's 67 bytes of overhead, which its compression of the deltas
//! rarely leaves (`gossip_catch_up.rs` reports how often). Here every node seals datagrams of at
//! most 1 400 bytes (`--gossip-datagram-size`), so every catch-up message of the 3 members'
//! ~150 KB of state (registry instances) reaches the newcomer in pieces. The newcomer must see
//! every member and every instance intact, must have reassembled split messages
//! (`draft_gossip_messages_reassembled_total`), and no node may have rejected a datagram.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{bulk::*, *};

const MEMBERS: usize = 3;
const PER_NODE: usize = 50;
const DATAGRAM: &str = "1400";

#[test]
fn a_newcomer_catches_up_through_split_sealed_messages() {
    let small = ["--gossip-datagram-size", DATAGRAM];
    let first = NodeProc::start_with("s0", &small);
    let mut nodes = vec![first];
    for i in 1..MEMBERS {
        let seed = nodes[0].gossip.clone();
        nodes.push(NodeProc::start_with(
            &format!("s{i}"),
            &[&small[..], &["--seed", &seed]].concat(),
        ));
    }
    for (i, n) in nodes.iter().enumerate() {
        wait_until("the registry answers", Duration::from_secs(20), || {
            http_get(&n.admin, "/registry/services").contains("instances")
        });
        for j in 0..PER_NODE {
            register(n, 's', i, j);
        }
    }
    let want: BTreeSet<String> = (0..MEMBERS)
        .flat_map(|i| (0..PER_NODE).map(move |j| format!("s{i}-{j}")))
        .collect();
    seen_within(
        "the first member sees every member and instance",
        Duration::from_secs(30),
        || sees_all(&nodes[0], MEMBERS, 's', &want),
    );

    let seed = nodes[1].gossip.clone();
    let newcomer = NodeProc::start_with("s-new", &[&small[..], &["--seed", &seed]].concat());
    seen_within(
        "the newcomer sees every member alive and every instance",
        Duration::from_secs(30),
        || sees_all(&newcomer, MEMBERS + 1, 's', &want),
    );
    let reassembled = counter(&newcomer, "draft_gossip_messages_reassembled_total");
    assert!(
        reassembled > 0,
        "the newcomer caught up without a split message: the split path was not exercised"
    );
    nodes.push(newcomer);
    let mut split = 0;
    for n in &nodes {
        assert_eq!(
            counter(n, "draft_gossip_datagrams_rejected_total"),
            0,
            "{} rejected datagrams",
            n.name
        );
        split += counter(n, "draft_gossip_messages_split_total");
    }
    assert!(
        split >= reassembled,
        "{split} split, {reassembled} reassembled"
    );
    eprintln!(
        "catch-up of ~{} KB of state in {DATAGRAM}-byte sealed datagrams: {split} messages split \
         in all, {reassembled} reassembled by the newcomer",
        want.len() * BLOB / 1000
    );
}

/// A size outside 512..=65507 is refused at start, naming the flag's limits.
#[test]
fn a_gossip_datagram_size_out_of_range_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    match NodeProc::try_start_in(
        "s-bad",
        &root.path().join("data"),
        &["--gossip-datagram-size", "100"],
        None,
    ) {
        Started::Running(_) => panic!("a node started with 100-byte gossip datagrams"),
        Started::Exited { status, log } => {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains("gossip datagram size 100 must be 512 to 65507 bytes"),
                "{log}"
            );
        }
    }
}
