//! Live figures of named actors on one node: mailbox length, messages handled, rate and times,
//! failures, node totals, and the `draft_actor_*` metric families.

use std::time::Duration;

use runtime::{LiveStats, Node, NodeTree};
use serde_json::json;

async fn node(name: &str) -> Node {
    Node::builder()
        .name(name)
        .without_admin()
        .start()
        .await
        .expect("node starts")
}

async fn stats_of(node: &Node, actor: &str) -> LiveStats {
    let tree = node.tree().await.expect("tree");
    let t = tree
        .find(actor)
        .unwrap_or_else(|| panic!("{actor} not in the tree"));
    t.stats
        .clone()
        .unwrap_or_else(|| panic!("{actor} has no live figures: {t:?}"))
}

/// Poll `cond` on the actor's figures every 50 ms until it holds (at most 15 s).
async fn wait_stats(
    node: &Node,
    actor: &str,
    what: &str,
    cond: impl Fn(&LiveStats) -> bool,
) -> LiveStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats_of(node, actor).await;
        if cond(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_slow_actor_under_a_flood_shows_its_mailbox_then_drains() {
    let node = node("ls-flood").await;
    node.spawn_factory("echo", "ls-slow", json!(null))
        .await
        .unwrap();
    for _ in 0..40 {
        node.tell_json("ls-slow", json!({"sleep_ms": 25}))
            .await
            .unwrap();
    }
    let s = stats_of(&node, "ls-slow").await;
    assert!(s.mailbox >= 20, "40 messages of 25 ms sent, mailbox {s:?}");
    assert!(s.timed);
    let s = wait_stats(&node, "ls-slow", "the mailbox drained", |s| {
        s.mailbox == 0 && s.handled == 40 && s.rate > 0.0
    })
    .await;
    // every handler slept 25 ms: the mean and p99 say so (p99 is a bucket edge, <= 25 % above)
    assert!(s.mean_us >= 25_000.0, "{s:?}");
    assert!(s.p99_us >= 25_000.0 && s.p99_us < 60_000.0, "{s:?}");
    assert!(s.uptime_s > 0.0);
    let tree: NodeTree = node.node_tree().await.unwrap();
    let totals = tree.totals.expect("node totals");
    assert!(totals.handled >= 40, "{totals:?}");
    assert!(totals.timing);
    assert!(totals.rss_bytes.unwrap_or(0) > 0, "{totals:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_panic_is_kept_as_a_failure_reason_across_the_restart() {
    let node = node("ls-crash").await;
    node.spawn_factory("echo", "ls-crashy", json!(null))
        .await
        .unwrap();
    node.tell_json("ls-crashy", json!({"crash": true}))
        .await
        .unwrap();
    let s = wait_stats(&node, "ls-crashy", "the failure", |s| {
        !s.failures.is_empty()
    })
    .await;
    assert!(
        s.failures[0].contains("echo asked to crash"),
        "{:?}",
        s.failures
    );
    let tree = node.tree().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut restarts = tree.find("ls-crashy").map(|t| t.restarts).unwrap_or(0);
    while restarts < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
        restarts = node
            .tree()
            .await
            .unwrap()
            .find("ls-crashy")
            .map(|t| t.restarts)
            .unwrap_or(0);
    }
    // the figures belong to the name: still there after the restart
    let s = stats_of(&node, "ls-crashy").await;
    assert_eq!(s.failures.len(), 1, "{s:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn with_timing_off_messages_are_still_counted_but_not_timed() {
    let node = node("ls-off").await;
    node.set_actor_stats(false);
    node.spawn_factory("echo", "ls-untimed", json!(null))
        .await
        .unwrap();
    for _ in 0..5 {
        node.call_json("ls-untimed", json!(1), Duration::from_secs(5))
            .await
            .unwrap();
    }
    let s = stats_of(&node, "ls-untimed").await;
    assert_eq!(s.handled, 0, "timed while off: {s:?}");
    assert_eq!(node.metrics().messages_handled(), 5);
    node.set_actor_stats(true);
    node.call_json("ls-untimed", json!(1), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stats_of(&node, "ls-untimed").await.handled, 1);
    node.shutdown().await;
}

#[tokio::test]
async fn metrics_have_one_series_per_named_actor() {
    let node = node("ls-metrics").await;
    node.spawn_factory("echo", "ls-m1", json!(null))
        .await
        .unwrap();
    for _ in 0..3 {
        node.call_json("ls-m1", json!(1), Duration::from_secs(5))
            .await
            .unwrap();
    }
    let text = node.metrics_text().await;
    assert!(
        text.contains("draft_actor_messages_handled_total{actor=\"ls-m1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("draft_actor_mailbox{actor=\"ls-m1\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE draft_actor_handling_p99_seconds gauge\n"));
    assert!(text.ends_with("# EOF\n"));
    // a stopped actor's series goes away with it
    node.stop("ls-m1").await.unwrap();
    assert!(!node.metrics_text().await.contains("actor=\"ls-m1\""));
    node.shutdown().await;
}

#[tokio::test]
async fn system_actors_show_their_mailbox_only() {
    let node = node("ls-system").await;
    let s = stats_of(&node, "inspector").await;
    assert!(!s.timed);
    assert_eq!(s.handled, 0);
    node.shutdown().await;
}

/// An actor with a big state and big messages, each handled slowly.
#[derive(Clone)]
struct Big;

/// Sleep this many milliseconds; the payload only makes the message big.
struct BigMsg(u64, #[allow(dead_code)] [u8; 1024]);

impl ractor::Message for BigMsg {}

impl ractor::Actor for Big {
    type Msg = BigMsg;
    type State = Box<[u8; 64 * 1024]>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<BigMsg>,
        _: (),
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(Box::new([0; 64 * 1024]))
    }

    async fn handle(
        &self,
        _: ractor::ActorRef<BigMsg>,
        msg: BigMsg,
        _: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        tokio::time::sleep(Duration::from_millis(msg.0)).await;
        Ok(())
    }
}

#[tokio::test]
async fn the_memory_estimate_grows_with_the_state_the_mailbox_and_what_the_actor_reports() {
    let node = node("ls-memory").await;
    let state_heap = 64 * 1024;
    let big = node
        .spawn_with_memory("ls-big", Big, (), move |_| state_heap)
        .await
        .unwrap();
    let per_message = (std::mem::size_of::<BigMsg>()
        + std::mem::size_of::<ractor::message::BoxedMessage>()) as u64;
    let shallow = runtime::ACTOR_BASE_BYTES + std::mem::size_of::<Box<[u8; 64 * 1024]>>() as u64;
    // started: the hook was asked, its 64 KiB are in the estimate
    let idle = wait_stats(&node, "ls-big", "the hook's figure", |s| s.memory_reported).await;
    assert_eq!(
        idle.memory_bytes,
        Some(shallow + state_heap as u64),
        "{idle:?}"
    );
    // a flood of 1 KiB messages, 20 ms each: the queued ones are counted at their size
    for _ in 0..50 {
        big.cast(BigMsg(20, [0; 1024])).unwrap();
    }
    let s = stats_of(&node, "ls-big").await;
    assert!(s.mailbox >= 20, "{s:?}");
    assert_eq!(
        s.memory_bytes,
        Some(shallow + state_heap as u64 + s.mailbox * per_message),
        "{s:?}"
    );
    assert!(per_message > 1024);
    let tree = node.node_tree().await.unwrap();
    let totals = tree.totals.expect("totals");
    assert!(
        totals.memory_bytes >= shallow + state_heap as u64,
        "{totals:?}"
    );
    let text = node.metrics_text().await;
    assert!(
        text.contains("# TYPE draft_actor_memory_bytes gauge\n")
            && text.contains("draft_actor_memory_bytes{actor=\"ls-big\"} "),
        "{text}"
    );
    wait_stats(&node, "ls-big", "the mailbox drained", |s| s.mailbox == 0).await;
    node.shutdown().await;
}

#[tokio::test]
async fn the_echo_actor_reports_the_buffer_it_holds_and_lets_it_go() {
    let node = node("ls-hold").await;
    node.spawn_factory("echo", "ls-holder", json!(null))
        .await
        .unwrap();
    let held = 4u64 << 20;
    node.call_json(
        "ls-holder",
        json!({"hold_bytes": held}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    // asked after that message or, at the latest, after the next one past a sampler round
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats_of(&node, "ls-holder").await;
        if s.memory_reported && s.memory_bytes.unwrap_or(0) >= held {
            assert!(
                s.memory_bytes.unwrap_or(0) < held + runtime::ACTOR_BASE_BYTES + 4096,
                "{s:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reported: {s:?}"
        );
        node.call_json("ls-holder", json!(1), Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.call_json(
        "ls-holder",
        json!({"hold_bytes": 0}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let s = stats_of(&node, "ls-holder").await;
        if s.memory_bytes.unwrap_or(u64::MAX) < runtime::ACTOR_BASE_BYTES + 4096 {
            assert!(s.memory_reported, "{s:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still held: {s:?}");
        node.call_json("ls-holder", json!(1), Duration::from_secs(5))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}
