//! The largest key-value a node may put in its gossip state, and why.
//!
//! chitchat sends a node's changes as deltas that fill one UDP datagram (65 507 bytes before
//! sealing; the sealing layer splits a sealed message that would be larger, see `seal.rs`),
//! and it never splits one key-value. A key-value whose delta does not fit is never sent, and
//! because a node's changes go out in version order, neither is anything that node publishes
//! after it; the delta also stops there, so what would have followed it from other nodes waits
//! too. One oversized value would freeze its node's state in every other node's view (and the
//! catch-up of every node that joins later). So every value is checked before it enters the
//! gossip state ([`check`]), and values users control (registry instances, node names, roles,
//! queue groups) are bounded where they are made; names of actors are not gossiped at all
//! (the name directory holds them, `directory.rs`).
//!
//! The room, in bytes, for one key-value sent alone in an `Ack` (the message that carries a
//! node's own changes to the peer it gossips with) is 65 507, less 4 (envelope header), 7 (the
//! delta's block framing), the node's entry (1 + 2 + name + 8 + 19 for an IPv6 gossip address
//! and 16) and the key-value's framing (1 + 2 + 2 + 8 + 1): 65 436 less the node name's
//! length, for key and value. With node names of at most [`NODE_NAME_MAX`] bytes that is
//! 65 308; [`GOSSIP_ENTRY_MAX`] is 64 000. `--gossip-datagram-size` does not change it: it
//! bounds the sealed datagrams, and a message larger than one is split.
//!
//! ```
//! assert!(runtime::GOSSIP_ENTRY_MAX < 65_436 - runtime::NODE_NAME_MAX);
//! ```

use crate::error::RuntimeError;

/// The most bytes a gossip key and its value may have together.
pub const GOSSIP_ENTRY_MAX: usize = 64_000;

/// The longest node name, in bytes (a node's name travels in every gossip digest and delta).
pub const NODE_NAME_MAX: usize = 128;

/// Refuse a key-value that gossip could not carry.
pub(crate) fn check(key: &str, value: &str) -> Result<(), RuntimeError> {
    let size = key.len() + value.len();
    if size > GOSSIP_ENTRY_MAX {
        return Err(RuntimeError::GossipEntryTooLarge {
            key: key.chars().take(80).collect(),
            size,
            limit: GOSSIP_ENTRY_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        time::{Duration, Instant},
    };

    use chitchat::{
        spawn_chitchat, transport::ChannelTransport, ChitchatConfig, ChitchatHandle, ChitchatId,
        FailureDetectorConfig, MAX_UDP_DATAGRAM_PAYLOAD_SIZE,
    };

    use super::*;

    #[test]
    fn entries_over_the_limit_are_refused_with_the_limit_named() {
        assert!(check("k", &"v".repeat(GOSSIP_ENTRY_MAX - 1)).is_ok());
        let err = check("k", &"v".repeat(GOSSIP_ENTRY_MAX)).unwrap_err();
        assert!(
            matches!(err, RuntimeError::GossipEntryTooLarge { size, limit, .. }
                if size == GOSSIP_ENTRY_MAX + 1 && limit == GOSSIP_ENTRY_MAX),
            "{err}"
        );
        assert!(err.to_string().contains("64000"), "{err}");
        assert_eq!(err.http_status(), 413);
    }

    async fn gossiper(transport: &ChannelTransport, name: &str, port: u16) -> ChitchatHandle {
        let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let seed = if port == 1 { "[::1]:2" } else { "[::1]:1" };
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(name.to_string(), 1, addr),
            cluster_id: "gossip-entry-test".into(),
            gossip_interval: Duration::from_millis(10),
            listen_addr: addr,
            seed_nodes: vec![seed.to_string()],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(60),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        spawn_chitchat(config, Vec::new(), transport).await.unwrap()
    }

    /// `(value of key on sender as seen by the receiver, the sender's heartbeat there)`.
    async fn seen(rx: &ChitchatHandle, from: &ChitchatId, key: &str) -> (Option<usize>, u64) {
        let (from, key) = (from.clone(), key.to_string());
        rx.with_chitchat(move |c| {
            let state = c.node_state(&from);
            (
                state.and_then(|s| s.get(&key)).map(str::len),
                state.map(|s| u64::from(s.heartbeat())).unwrap_or(0),
            )
        })
        .await
    }

    /// The bound computed in the module doc is chitchat's real one: with the longest node name
    /// and an IPv6 gossip address, a key-value of exactly that size reaches the other node (and
    /// so does what is published after it); one byte more is never sent, and freezes everything
    /// published after it, while heartbeats still flow.
    #[tokio::test]
    async fn the_computed_bound_is_chitchats_and_one_byte_more_freezes_the_node() {
        let real_bound = 65_436 - NODE_NAME_MAX;
        assert!(GOSSIP_ENTRY_MAX <= real_bound);
        for (size, arrives) in [(real_bound, true), (real_bound + 1, false)] {
            let transport = ChannelTransport::with_mtu(MAX_UDP_DATAGRAM_PAYLOAD_SIZE);
            let name = "n".repeat(NODE_NAME_MAX);
            let a = gossiper(&transport, &name, 1).await;
            let b = gossiper(&transport, "b", 2).await;
            let a_id = a.chitchat_id().clone();
            let key = "big";
            let value = "v".repeat(size - key.len());
            a.with_chitchat(move |c| {
                c.self_node_state().set("before", "1");
                c.self_node_state().set(key, value.clone());
                c.self_node_state().set("after", "1");
            })
            .await;
            let deadline = Instant::now() + Duration::from_secs(20);
            let start_beat = loop {
                let (before, beat) = seen(&b, &a_id, "before").await;
                if before.is_some() {
                    break beat;
                }
                assert!(Instant::now() < deadline, "'before' never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            loop {
                let (big, beat) = seen(&b, &a_id, key).await;
                let (after, _) = seen(&b, &a_id, "after").await;
                if arrives && big == Some(size - key.len()) && after.is_some() {
                    break;
                }
                if !arrives {
                    assert_eq!((big, after), (None, None), "{size} bytes were sent");
                    // 100 heartbeats of the sender seen: 100 gossip rounds went by
                    if beat >= start_beat + 100 {
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "{size} bytes: not arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            a.shutdown().await.unwrap();
            b.shutdown().await.unwrap();
        }
    }
}
