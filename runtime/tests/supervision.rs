//! How a node's supervision tree survives a crash storm (one process = one node; the
//! multi-process version, with KV, is `dctl/tests/supervision.rs`): a crash-looping user actor
//! is stopped alone, `/health` names a system service that is not running, and a root
//! supervisor that gives up makes `run_until_signal` fail so the process exits non-zero.

use std::time::Duration;

use actors::{ChildStatus, TreeSnapshot};
use runtime::{Node, RuntimeError};
use serde_json::{json, Value};

async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn find<'a>(tree: &'a TreeSnapshot, name: &str) -> &'a TreeSnapshot {
    tree.find(name)
        .unwrap_or_else(|| panic!("{name} not in the tree: {tree:?}"))
}

#[tokio::test]
async fn a_crash_looping_user_actor_is_stopped_alone_and_the_node_stays_healthy() {
    let node = Node::builder()
        .name("sv-storm")
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    node.spawn_factory("echo", "bystander", Value::Null)
        .await
        .unwrap();
    let bystander_id = find(&node.tree().await.unwrap(), "bystander")
        .actor_id
        .clone();
    // Three rounds of the storm: spawn, crash it 11 times (one more than its 10 restarts).
    for round in 0..3 {
        node.spawn_factory("echo", "looper", Value::Null)
            .await
            .unwrap();
        for n in 0..11u32 {
            // Each crash lands on the incarnation the previous restart started.
            wait_until("looper running", || async {
                let tree = node.tree().await.unwrap();
                let l = find(&tree, "looper");
                l.status == ChildStatus::Running && l.restarts == n
            })
            .await;
            node.tell_json("looper", json!({"crash": true}))
                .await
                .unwrap();
        }
        wait_until("looper given up", || async {
            find(&node.tree().await.unwrap(), "looper").status == ChildStatus::Failed
        })
        .await;
        let tree = node.tree().await.unwrap();
        let looper = find(&tree, "looper");
        let reason = looper.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("more than 10 restarts") && reason.contains("echo asked to crash"),
            "round {round}: {reason}"
        );
        let bystander = find(&tree, "bystander");
        assert_eq!(bystander.status, ChildStatus::Running);
        assert_eq!(
            bystander.actor_id, bystander_id,
            "bystander never restarted"
        );
        for service in ["system", "user", "inspector", "spawner"] {
            assert_eq!(
                find(&tree, service).status,
                ChildStatus::Running,
                "{service}"
            );
        }
        let health = node.health().await;
        assert!(health.is_healthy(), "round {round}: {:?}", health.down);
        assert!(!node.root_gave_up());
    }
    let reply = node
        .call_json(
            "bystander",
            json!({"still": "here"}),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(reply, json!({"still": "here"}));

    // DELETE /api/actors/{name} stops an actor (a failed one is forgotten the same way).
    let base = format!("http://{}", node.admin_addr().unwrap());
    let http = reqwest::Client::new();
    for name in ["looper", "bystander"] {
        let resp = http
            .delete(format!("{base}/api/actors/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body, json!({"stopped": name, "node": "sv-storm"}));
        assert!(node.tree().await.unwrap().find(name).is_none(), "{name}");
    }
    let resp = http
        .delete(format!("{base}/api/actors/bystander"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unknown actor 'bystander'");
    node.shutdown().await;
}

#[tokio::test]
async fn health_names_a_system_service_that_is_not_running() {
    let node = Node::builder()
        .name("sv-health")
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", node.admin_addr().unwrap());
    let http = reqwest::Client::new();
    let system = node.system_supervisor().unwrap();
    actors::terminate_child(&system, "spawner").await.unwrap();
    let resp = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unhealthy", "node": "sv-health", "down": ["system/spawner (stopped)"]})
    );
    actors::restart_child(&system, "spawner").await.unwrap();
    let resp = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    node.shutdown().await;
}

#[tokio::test]
async fn the_nodes_loops_are_supervised_and_a_killed_one_comes_back_working() {
    let node = Node::builder()
        .name("sv-loops")
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let loops = [
        "actor-stats-sampler",
        "directory-publisher",
        "gossip-changes",
        "cluster-reconcile",
    ];
    let tree = node.tree().await.unwrap();
    let system = find(&tree, "system");
    for id in loops {
        let shown = system
            .children
            .iter()
            .find(|c| c.name == id)
            .unwrap_or_else(|| panic!("{id} not a child of system: {system:?}"));
        assert_eq!(
            (shown.kind, shown.status),
            (actors::ChildKind::Worker, ChildStatus::Running),
            "{id}"
        );
        assert_eq!(shown.restart.as_deref(), Some("transient"), "{id}");
    }
    let sup = node.system_supervisor().unwrap();
    for id in loops {
        let cell = actors::child_cell(&sup, id).await.unwrap().expect(id);
        cell.kill();
        wait_until(&format!("{id} restarted"), || async {
            let t = node.tree().await.unwrap();
            let c = find(&t, id);
            c.restarts == 1 && c.status == ChildStatus::Running
        })
        .await;
    }
    // The restarted publisher publishes: a new name reaches its owner (this node).
    node.spawn("sv-loops-echo", runtime::echo::Echo, ())
        .await
        .unwrap();
    assert!(node.names_published().await, "the name was not published");
    let health = node.health().await;
    assert!(health.is_healthy(), "{:?}", health.down);
    node.shutdown().await;
}

#[tokio::test]
async fn a_root_that_gives_up_stops_the_node_with_an_error() {
    let node = Node::builder()
        .name("sv-root")
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    node.enable_diagnostics();
    let base = format!("http://{}", node.admin_addr().unwrap());
    let runner = {
        let node = node.clone();
        tokio::spawn(async move { node.run_until_signal().await })
    };
    let http = reqwest::Client::new();
    // `system` allows 10 restarts in 10 s: the 11th kill of a service makes it give up, and
    // root (which restarts nothing) with it.
    let system = node.system_supervisor().unwrap();
    for kill in 1..=11 {
        assert!(
            !node.root_gave_up(),
            "root gave up after {} kills",
            kill - 1
        );
        wait_until("inspector running", || async {
            matches!(actors::child_cell(&system, "inspector").await, Ok(Some(_)))
        })
        .await;
        let resp = http
            .post(format!("{base}/api/diag/kill/inspector"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "kill {kill}");
    }
    let result = tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("run_until_signal returns")
        .unwrap();
    assert!(
        matches!(result, Err(RuntimeError::RootGaveUp(ref n)) if n == "sv-root"),
        "{result:?}"
    );
    assert!(node.root_gave_up());
    assert!(
        http.get(format!("{base}/health")).send().await.is_err(),
        "the admin API is gone with the node"
    );
}
