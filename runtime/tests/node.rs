//! Single-node behaviour of the runtime: spawning, lookup, tell/call, supervision of spawned
//! actors, errors, the admin HTTP API and ordered shutdown.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runtime::{ChildStatus, Factory, JsonMsg, Node, RuntimeError};
use serde_json::{json, Value};

async fn node(name: &str) -> Node {
    Node::builder()
        .name(name)
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .expect("node starts")
}

async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A typed counter actor.
#[derive(Clone)]
struct Counter {
    log: Arc<Mutex<Vec<String>>>,
    label: String,
}
enum CounterMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}
impl ractor::Message for CounterMsg {}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = u64;
    async fn pre_start(
        &self,
        _: ActorRef<CounterMsg>,
        start: u64,
    ) -> Result<u64, ActorProcessingErr> {
        Ok(start)
    }
    async fn post_stop(
        &self,
        _: ActorRef<CounterMsg>,
        _: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        self.log
            .lock()
            .unwrap()
            .push(format!("stop {}", self.label));
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        n: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(k) => *n += k,
            CounterMsg::Get(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

/// A JSON actor that takes a long time to answer calls.
#[derive(Clone)]
struct Slow;
impl Actor for Slow {
    type Msg = JsonMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<JsonMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<JsonMsg>,
        msg: JsonMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let JsonMsg::Call(p, reply) = msg {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = reply.send(p);
        }
        Ok(())
    }
}

#[tokio::test]
async fn echo_replies_crashes_and_is_restarted() {
    let node = node("t-echo").await;
    node.spawn_factory("echo", "t-echo-e1", Value::Null)
        .await
        .unwrap();
    let reply = node
        .call_json("t-echo-e1", json!({"x": 1}), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reply, json!({"x": 1}));

    node.tell_json("t-echo-e1", json!({"crash": true}))
        .await
        .unwrap();
    wait_until("e1 restarted", || async {
        node.tree()
            .await
            .ok()
            .and_then(|t| {
                t.find("t-echo-e1")
                    .map(|e| e.restarts >= 1 && e.status == ChildStatus::Running)
            })
            .unwrap_or(false)
    })
    .await;
    let reply = node
        .call_json("t-echo-e1", json!({"again": true}), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reply, json!({"again": true}));
    assert!(node.restarts() >= 1);

    // a call that crashes the actor is an error to the caller, not a hang
    let err = node
        .call_json("t-echo-e1", json!({"crash": true}), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NoReply(_)), "{err}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_tell_to_a_stopped_actor_says_it_is_not_running() {
    // (found by the admin API's fuzz target: a tell after a crash answered "stopped before
    // replying", a call's error, as a 502)
    let node = node("t-stopped").await;
    node.spawn("t-stopped-e1", runtime::echo::Echo, ())
        .await
        .unwrap();
    let echo = node.lookup::<JsonMsg>("t-stopped-e1").unwrap();
    node.stop_actor("t-stopped-e1").await.unwrap();
    let err = node.tell(&echo, JsonMsg::Tell(b"{}".to_vec())).unwrap_err();
    assert!(matches!(err, RuntimeError::NotRunning(_)), "{err}");
    assert_eq!(err.http_status(), 503);
    assert!(err.to_string().contains("is not running"), "{err}");
    node.shutdown().await;
}

#[tokio::test]
async fn typed_actors_spawn_lookup_and_call() {
    let node = node("t-typed").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let counter = Counter {
        log,
        label: "c".into(),
    };
    let r = node.spawn("t-typed-c", counter, 40).await.unwrap();
    r.send_message(CounterMsg::Add(2)).unwrap();
    let found = node.lookup::<CounterMsg>("t-typed-c").unwrap();
    let n = node
        .call(&found, CounterMsg::Get, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(n, 42);
    assert!(matches!(
        node.lookup::<JsonMsg>("t-typed-c"),
        Err(RuntimeError::WrongMessageType(..))
    ));
    let err = node
        .call_json("t-typed-c", json!(1), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not accept JSON"), "{err}");
    assert!(matches!(
        node.lookup::<CounterMsg>("t-typed-missing"),
        Err(RuntimeError::UnknownActor(_))
    ));
    assert!(node.metrics().messages_handled() >= 2);
    node.shutdown().await;
}

#[tokio::test]
async fn errors_are_typed_and_leave_the_node_running() {
    let node = node("t-errors").await;
    node.register_factory("slow", Factory::new(|_| Ok((Slow, ()))));
    node.spawn_factory("slow", "t-errors-slow", Value::Null)
        .await
        .unwrap();
    node.spawn_factory("echo", "t-errors-echo", Value::Null)
        .await
        .unwrap();

    let err = node
        .call_json("t-errors-slow", json!(1), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Timeout { .. }), "{err}");
    assert_eq!(err.http_status(), 504);

    let err = node
        .call_json("t-errors-none", json!(1), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown actor 't-errors-none'");

    let err = node
        .spawn_factory("nope", "x", Value::Null)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown factory 'nope'"), "{err}");

    let err = node
        .spawn_factory("echo", "t-errors-echo", Value::Null)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NameTaken(_)), "{err}");

    let err = node
        .spawn_factory("echo", "bad name!", Value::Null)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Config(_)), "{err}");

    // still serving
    let ok = node
        .call_json("t-errors-echo", json!("still"), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(ok, json!("still"));
    node.shutdown().await;
}

#[tokio::test]
async fn a_stopped_actor_name_can_be_reused() {
    let node = node("t-reuse").await;
    node.spawn_factory("echo", "t-reuse-e", Value::Null)
        .await
        .unwrap();
    node.stop_actor("t-reuse-e").await.unwrap();
    assert!(node.tree().await.unwrap().find("t-reuse-e").is_none());
    node.spawn_factory("echo", "t-reuse-e", Value::Null)
        .await
        .unwrap();
    assert_eq!(
        node.call_json("t-reuse-e", json!(3), Duration::from_secs(1))
            .await
            .unwrap(),
        json!(3)
    );
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_spawned_actors_in_reverse_order() {
    let node = node("t-order").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    for label in ["one", "two", "three"] {
        let c = Counter {
            log: log.clone(),
            label: label.into(),
        };
        node.spawn(&format!("t-order-{label}"), c, 0).await.unwrap();
    }
    node.shutdown().await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["stop three", "stop two", "stop one"]
    );
    assert_eq!(node.root().get_status(), ractor::ActorStatus::Stopped);
}

#[tokio::test]
async fn builder_rejects_bad_configuration() {
    let err = Node::builder()
        .name("t-cfg")
        .admin_addr("nonsense")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not HOST:PORT"), "{err}");
    let err = Node::builder().name("bad name").start().await.unwrap_err();
    assert!(matches!(err, RuntimeError::Config(_)), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Node::builder()
        .name("t-cfg-bind")
        .admin_addr(&addr)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Bind { .. }), "{err}");
    // the failed start left nothing behind: the same name starts fine elsewhere
    let node = Node::builder()
        .name("t-cfg-bind")
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    node.shutdown().await;
}

#[tokio::test]
async fn admin_http_api_serves_health_metrics_tree_and_messaging() {
    let node = node("t-http").await;
    let base = format!("http://{}", node.admin_addr().unwrap());
    let http = reqwest::Client::new();

    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "node": "t-http", "down": []})
    );

    let r = http
        .post(format!("{base}/api/spawn"))
        .body(r#"{"factory":"echo","name":"t-http-e"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = http
        .post(format!("{base}/api/actors/t-http-e/call?timeout_ms=2000"))
        .body(r#"{"hello":[1,2,3]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"hello": [1, 2, 3]})
    );

    let r = http
        .post(format!("{base}/api/actors/t-http-e/tell"))
        .body(r#"{"crash":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_until("restart visible in /tree", || async {
        let tree: Value = http
            .get(format!("{base}/tree"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tree["node"] == "t-http"
            && tree["tree"]["children"][1]["children"][0]["name"] == "t-http-e"
            && tree["tree"]["children"][1]["children"][0]["restarts"].as_u64() >= Some(1)
    })
    .await;

    // bad input: clear errors, node keeps serving
    let r = http
        .post(format!("{base}/api/actors/t-http-e/call"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("invalid JSON"),
        "{body}"
    );
    let r = http
        .post(format!("{base}/api/spawn"))
        .body(r#"{"name":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/api/actors/nobody/call"))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let huge = vec![b'1'; 2 * 1024 * 1024];
    let r = http
        .post(format!("{base}/api/actors/t-http-e/tell"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{metrics}"))
    };
    assert!(value("draft_restarts_total") >= 1.0);
    assert!(value("draft_messages_handled_total") >= 2.0);
    assert!(value("draft_actors_alive") >= 5.0); // root, system, inspector, user, t-http-e

    let page = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Supervision tree"));
    node.shutdown().await;
    assert!(
        http.get(format!("{base}/health")).send().await.is_err(),
        "admin server stopped"
    );
}

#[tokio::test]
async fn watch_reports_when_the_watched_actor_goes_down() {
    let node = node("t-watch").await;
    node.spawn_factory("echo", "t-watch-e", Value::Null)
        .await
        .unwrap();
    let err = node
        .spawn_factory("watch", "t-watch-bad", json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("target"), "{err}");
    node.spawn_factory("watch", "t-watch-w", json!({"target": "t-watch-e"}))
        .await
        .unwrap();
    let state = || async {
        node.call_json("t-watch-w", json!(null), Duration::from_secs(1))
            .await
            .unwrap()
    };
    assert_eq!(state().await["down"], false);
    node.tell_json("t-watch-e", json!({"crash": true}))
        .await
        .unwrap();
    wait_until("watcher sees the crash", || async {
        state().await["down"] == true
    })
    .await;
    let s = state().await;
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("echo asked to crash"),
        "{s}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn extensions_routes_shutdown_hooks_and_gossip_state() {
    let node = node("t-ext").await;
    let base = format!("http://{}", node.admin_addr().unwrap());
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/ext/hello")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    node.add_admin_routes(
        axum::Router::new().route("/ext/hello", axum::routing::get(|| async { "hi" })),
    );
    let r = http.get(format!("{base}/ext/hello")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hi");

    node.gossip_set("svc:demo:1", "127.0.0.1:9").await.unwrap();
    let scan = node.gossip_scan("svc:").await;
    assert_eq!(
        scan,
        vec![(
            "t-ext".to_string(),
            "svc:demo:1".to_string(),
            "127.0.0.1:9".to_string()
        )]
    );
    node.gossip_delete("svc:demo:1").await;
    assert!(node.gossip_scan("svc:").await.is_empty());

    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=2 {
        let order = order.clone();
        let n = node.clone();
        node.on_shutdown(move || async move {
            // hooks run before the tree stops
            let alive = n.tree().await.is_ok();
            order.lock().unwrap().push((i, alive));
        });
    }
    assert!(node.system_supervisor().is_ok());
    node.shutdown().await;
    assert_eq!(*order.lock().unwrap(), vec![(2, true), (1, true)]);
}

#[tokio::test]
async fn a_node_starting_its_services_answers_503_not_404_until_they_are_mounted() {
    let node = Node::builder()
        .name("t-pending")
        .admin_addr("127.0.0.1:0")
        .services_pending()
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", node.admin_addr().unwrap());
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{base}/kv/get?key=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "node is still starting: /kv/get is not served yet"
    );
    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["down"], serde_json::json!(["services (starting)"]));
    // Routes already mounted are served while the rest start.
    node.add_admin_routes(
        axum::Router::new().route("/ext/ready", axum::routing::get(|| async { "yes" })),
    );
    let r = http.get(format!("{base}/ext/ready")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "yes");

    node.services_started();
    let r = http
        .get(format!("{base}/kv/get?key=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    node.shutdown().await;
}

/// `--max-actors`: spawns beyond the limit are refused with a clear error (HTTP 503) and the
/// node keeps serving; a crashed and restarted actor still counts once, a stopped one frees
/// its place.
#[tokio::test]
async fn spawns_beyond_max_actors_are_refused_and_stopping_frees_a_place() {
    let node = Node::builder()
        .name("t-limit")
        .without_admin()
        .max_actors(2)
        .start()
        .await
        .expect("node starts");
    for name in ["t-limit-a", "t-limit-b"] {
        node.spawn_factory("echo", name, Value::Null).await.unwrap();
    }
    assert_eq!(node.spawned_actors(), 2);
    let err = node
        .spawn_factory("echo", "t-limit-c", Value::Null)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::ActorLimit { limit: 2, .. }),
        "{err}"
    );
    assert_eq!(err.http_status(), 503);
    assert!(err.to_string().contains("actor limit"), "{err}");

    // a crash (no post_stop) and the restart: still two
    node.tell_json("t-limit-a", json!({"crash": true}))
        .await
        .unwrap();
    wait_until("a restarted", || async {
        node.tree()
            .await
            .ok()
            .and_then(|t| {
                t.find("t-limit-a")
                    .map(|e| e.restarts >= 1 && e.status == ChildStatus::Running)
            })
            .unwrap_or(false)
    })
    .await;
    assert_eq!(node.spawned_actors(), 2);
    assert!(matches!(
        node.spawn_factory("echo", "t-limit-c", Value::Null).await,
        Err(RuntimeError::ActorLimit { .. })
    ));

    node.stop_actor("t-limit-b").await.unwrap();
    wait_until("b's place freed", || async { node.spawned_actors() == 1 }).await;
    node.spawn_factory("echo", "t-limit-c", Value::Null)
        .await
        .unwrap();
    let reply = node
        .call_json("t-limit-c", json!({"ok": 1}), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(reply, json!({"ok": 1}));
    node.shutdown().await;
}

/// What a node puts in every gossip message is bounded: its name (in every digest) and its
/// roles (one gossip entry) are refused at start beyond what gossip carries.
#[tokio::test]
async fn a_node_name_or_roles_too_long_to_gossip_are_refused_at_start() {
    let long = "n".repeat(runtime::NODE_NAME_MAX + 1);
    let err = Node::builder()
        .name(&long)
        .admin_addr("127.0.0.1:0")
        .start()
        .await
        .expect_err("a 129-character name is refused");
    assert!(matches!(err, RuntimeError::Config(_)), "{err}");
    assert!(err.to_string().contains("must be 1-128"), "{err}");
    let mut b = Node::builder().name("t-roles").admin_addr("127.0.0.1:0");
    for i in 0..1100 {
        b = b.role(format!("{i:04}-{}", "r".repeat(55)));
    }
    let err = b.start().await.expect_err("1 100 roles are refused");
    assert!(
        err.to_string()
            .contains("1100 roles are too many to gossip"),
        "{err}"
    );
}
