//! One-node broker behaviour through the Rust API.

use std::time::Duration;

use broker::{Broker, CloudEvent, ConsumeOptions, Delivery, Policy, StartAt};
use futures::StreamExt;
use runtime::Node;

async fn node(name: &str, dir: &std::path::Path) -> (Node, Broker) {
    let node = Node::builder()
        .name(name)
        .admin_addr("127.0.0.1:0")
        .data_dir(dir)
        .start()
        .await
        .expect("node");
    let broker = Broker::start(&node).await.expect("broker");
    (node, broker)
}

fn ev(i: usize) -> CloudEvent {
    CloudEvent::builder("test", "n")
        .id(i.to_string())
        .data(serde_json::json!({ "i": i }))
        .build()
        .expect("valid")
}

async fn next(sub: &mut broker::Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery in time")
        .expect("stream open")
}

fn id_of(d: &Delivery) -> String {
    match d {
        Delivery::Event { event, .. } => event.id(),
        Delivery::Lost(n) => format!("lost {n}"),
        Delivery::Closed(reason) => format!("closed: {reason}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_groups_drop_and_durable_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (n, b) = node("broker-local-1", dir.path()).await;

    // Broadcast: both get all, in order; a group of two splits.
    let mut a = b.consume("c", ConsumeOptions::default()).await.unwrap();
    let mut c = b.consume("c", ConsumeOptions::default()).await.unwrap();
    let mut g1 = b
        .consume("c", ConsumeOptions::default().group("g"))
        .await
        .unwrap();
    let mut g2 = b
        .consume("c", ConsumeOptions::default().group("g"))
        .await
        .unwrap();
    for i in 0..10 {
        b.produce("c", ev(i)).await.unwrap();
    }
    for s in [&mut a, &mut c] {
        for i in 0..10 {
            assert_eq!(id_of(&next(s).await), i.to_string());
        }
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(id_of(&next(&mut g1).await));
        got.push(id_of(&next(&mut g2).await));
    }
    got.sort_by_key(|s| s.parse::<u32>().unwrap_or(0));
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    drop(g1);
    b.produce("c", ev(10)).await.unwrap();
    assert_eq!(id_of(&next(&mut g2).await), "10");

    // Drop policy: a slow consumer loses the oldest, is told how many, others are unaffected.
    let mut slow = b
        .consume(
            "d",
            ConsumeOptions::default().policy(Policy::Drop).capacity(4),
        )
        .await
        .unwrap();
    let mut fast = b
        .consume("d", ConsumeOptions::default().capacity(100))
        .await
        .unwrap();
    for i in 0..10 {
        b.produce("d", ev(i)).await.unwrap();
    }
    assert_eq!(next(&mut slow).await, Delivery::Lost(6));
    for i in 6..10 {
        assert_eq!(id_of(&next(&mut slow).await), i.to_string());
    }
    for i in 0..10 {
        assert_eq!(id_of(&next(&mut fast).await), i.to_string());
    }
    assert!(b.metrics_text().contains("broker_events_dropped_total 6"));

    // Durable: replay from an offset, then live.
    assert_eq!(b.declare_durable("log").await.unwrap(), "broker-local-1");
    for i in 0..5 {
        assert_eq!(b.produce("log", ev(i)).await.unwrap(), Some(i as u64));
    }
    let mut r = b
        .consume("log", ConsumeOptions::default().from(StartAt::Offset(2)))
        .await
        .unwrap();
    for i in 2..5 {
        assert_eq!(id_of(&next(&mut r).await), i.to_string());
    }
    b.produce("log", ev(5)).await.unwrap();
    assert_eq!(
        next(&mut r).await,
        Delivery::Event {
            event: ev(5),
            offset: Some(5)
        }
    );
    // Not durable: --from is refused.
    let err = b
        .consume("c", ConsumeOptions::default().from(StartAt::Beginning))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("not durable"));
    n.shutdown().await;
}

#[test]
fn invalid_events_are_refused_with_reasons() {
    let e = CloudEvent::from_json(r#"{"specversion":"1.0","source":"s","type":"t"}"#).unwrap_err();
    assert_eq!(e.to_string(), "required attribute 'id' is missing");
    let e = CloudEvent::from_json(r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#)
        .unwrap_err();
    assert!(
        e.to_string().contains("unsupported specversion \"0.3\""),
        "{e}"
    );
    let e = CloudEvent::from_json("nope").unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
    let e = CloudEvent::from_json(
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid CloudEvent"), "{e}");
    // Extensions, time and datacontenttype pass through unchanged.
    let text = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2024-01-02T03:04:05Z","datacontenttype":"application/json","traceparent":"00-ab","data":{"x":1}}"#;
    let ok = CloudEvent::from_json(text).unwrap();
    assert_eq!(ok.attr("time").as_deref(), Some("2024-01-02T03:04:05Z"));
    assert_eq!(ok.attr("traceparent").as_deref(), Some("00-ab"));
    assert_eq!(
        ok.to_value(),
        serde_json::from_str::<serde_json::Value>(text).unwrap()
    );
}

/// A node's interest in a channel is one gossip entry, so the queue groups with consumers on
/// one node are bounded: the next new group is refused by name, while joining a group that is
/// there, broadcast, and a group freed by its last consumer leaving still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_groups_per_channel_on_a_node_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (n, b) = node("broker-local-groups", dir.path()).await;
    let limit = broker::MAX_GROUPS_PER_CHANNEL;
    let mut subs = Vec::new();
    for i in 0..limit {
        let g = format!("{i:0>200}");
        subs.push(
            b.consume("wide", ConsumeOptions::default().group(g))
                .await
                .unwrap(),
        );
    }
    let err = match b
        .consume("wide", ConsumeOptions::default().group("one-more"))
        .await
    {
        Ok(_) => panic!("group {} on one node was accepted", limit + 1),
        Err(e) => e,
    };
    assert!(
        matches!(&err, broker::BrokerError::TooManyGroups { channel, limit: l } if channel == "wide" && *l == limit),
        "{err}"
    );
    assert_eq!(err.status(), 409);
    assert!(err.to_string().contains("256 queue groups"), "{err}");
    let same = format!("{:0>200}", 7);
    assert!(b
        .consume("wide", ConsumeOptions::default().group(same))
        .await
        .is_ok());
    assert!(b.consume("wide", ConsumeOptions::default()).await.is_ok());
    assert!(b
        .consume("other", ConsumeOptions::default().group("one-more"))
        .await
        .is_ok());
    // the last consumer of a group leaves: its place is free again
    drop(subs.pop());
    let _kept = b
        .consume("wide", ConsumeOptions::default().group("one-more"))
        .await
        .expect("a freed group's place is taken");
    // and this node's interest, the largest there can be, is in gossip (it fits)
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let scan = n.gossip_scan("broker/i/wide").await;
        let interest: Option<broker::Interest> = scan
            .first()
            .and_then(|(_, _, v)| serde_json::from_str(v).ok());
        if interest.is_some_and(|i| i.groups.len() == limit && i.has_group("one-more")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the interest never reached gossip: {scan:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n.shutdown().await;
}
