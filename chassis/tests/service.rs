//! The chassis in one process (one node each): live configuration, readiness in the registry,
//! graceful shutdown. Multi-node behaviour is in the samples' tests (real processes).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{routing::get, Router};
use chassis::{Ctx, Protocol, Service, ServiceArgs, TypedActor};
use clap::Parser;
use registry::service::{Health, WatchEvent, WatchKind};
use serde::{Deserialize, Serialize};

fn args(name: &str, dir: &std::path::Path) -> ServiceArgs {
    ServiceArgs::parse_from([
        "svc",
        "--name",
        name,
        "--data-dir",
        dir.to_str().expect("utf-8 temp dir"),
        "--cookie",
        "chassis-test",
    ])
}

/// Poll `cond` every 20 ms until it returns `Some` or `limit` passes.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fetch(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("HTTP request");
    let code = r.status().as_u16();
    (code, r.text().await.expect("HTTP body"))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Cfg {
    greeting: String,
    limit: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_live_and_a_bad_value_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let default = Cfg {
        greeting: "hi".into(),
        limit: 1,
    };
    let svc = Service::builder("cfgsvc")
        .config("config/cfgsvc", default, |c: &Cfg| {
            if c.limit == 0 {
                Err("limit must be > 0".into())
            } else {
                Ok(())
            }
        })
        .http(|ctx| {
            let cfg = ctx.config::<Cfg>().expect("configured");
            Router::new().route(
                "/greet",
                get(move || {
                    let cfg = cfg.clone();
                    async move { cfg.get().greeting.clone() }
                }),
            )
        })
        .start(args("cfg-node", dir.path()))
        .await
        .unwrap();
    let base = format!("http://{}", svc.http_addr().unwrap());
    let kv = svc.ctx().kv().clone();
    assert_eq!(
        fetch(&format!("{base}/greet")).await,
        (200, "hi".into()),
        "the default while the key is absent"
    );

    kv.put("config/cfgsvc", r#"{"greeting":"bonjour","limit":3}"#)
        .await
        .unwrap();
    wait_for("the new greeting", Duration::from_secs(5), || async {
        (fetch(&format!("{base}/greet")).await.1 == "bonjour").then_some(())
    })
    .await;

    // Malformed JSON: refused, reported, the old value stays.
    kv.put("config/cfgsvc", r#"{"greeting":"#).await.unwrap();
    let status: serde_json::Value = wait_for("the refusal", Duration::from_secs(5), || async {
        let v: serde_json::Value =
            serde_json::from_str(&fetch(&format!("{base}/service")).await.1).ok()?;
        v["config"]["error"].is_string().then_some(v)
    })
    .await;
    assert!(
        status["config"]["error"]
            .as_str()
            .unwrap()
            .starts_with("not valid JSON"),
        "{status}"
    );
    assert_eq!(status["config"]["rejected"], 1);
    assert_eq!(
        fetch(&format!("{base}/greet")).await.1,
        "bonjour",
        "old configuration kept"
    );
    let reg = svc.ctx().registry().clone();
    let meta = wait_for(
        "config_error in the registry",
        Duration::from_secs(5),
        || async {
            let i = reg.resolve("cfgsvc").await.ok()?.into_iter().next()?;
            i.metadata.get("config_error").cloned()
        },
    )
    .await;
    assert!(meta.starts_with("not valid JSON"), "{meta}");

    // Valid JSON that fails validation: refused with the validator's reason.
    kv.put("config/cfgsvc", r#"{"greeting":"zero","limit":0}"#)
        .await
        .unwrap();
    wait_for("the validation refusal", Duration::from_secs(5), || async {
        let v: serde_json::Value =
            serde_json::from_str(&fetch(&format!("{base}/service")).await.1).ok()?;
        (v["config"]["error"] == "invalid: limit must be > 0" && v["config"]["rejected"] == 2)
            .then_some(())
    })
    .await;
    assert_eq!(fetch(&format!("{base}/greet")).await.1, "bonjour");
    let metrics = fetch(&format!("{base}/metrics")).await.1;
    assert!(
        metrics.contains("chassis_config_rejected_total{service=\"cfgsvc\"} 2"),
        "{metrics}"
    );
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_at_start_refuses_to_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Another service on the node writes a bad value; this one then starts on the same node.
    let first = Service::builder("badcfg-writer")
        .start(args("badcfg-node", dir.path()))
        .await
        .unwrap();
    first.ctx().kv().put("config/badcfg", "[1,2").await.unwrap();
    let err = Service::builder("badcfg")
        .config("config/badcfg", 0u32, |_| Ok(()))
        .start_on(
            first.node().clone(),
            first.ctx().services().clone(),
            &args("badcfg-node", dir.path()),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("the configuration in KV key 'config/badcfg' is refused: not valid JSON"),
        "{text}"
    );
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_checks_and_is_published_in_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Arc::new(AtomicBool::new(true));
    let flag = ok.clone();
    let svc = Service::builder("readysvc")
        .readiness("db", move || {
            let ok = flag.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("no connection".to_string())
                }
            }
        })
        .http(|_| Router::new())
        .start(args("ready-node", dir.path()))
        .await
        .unwrap();
    let base = format!("http://{}", svc.http_addr().unwrap());
    let reg = svc.ctx().registry().clone();
    let health = || {
        let reg = reg.clone();
        async move {
            reg.resolve("readysvc")
                .await
                .ok()?
                .into_iter()
                .next()
                .map(|i| i.health)
        }
    };
    // Ready once the first round of checks has passed (503 until then).
    wait_for("ready", Duration::from_secs(10), || async {
        (fetch(&format!("{base}/health/ready")).await.0 == 200).then_some(())
    })
    .await;
    wait_for("passing", Duration::from_secs(5), || async {
        (health().await == Some(Health::Passing)).then_some(())
    })
    .await;

    ok.store(false, Ordering::SeqCst);
    wait_for("critical", Duration::from_secs(5), || async {
        (health().await == Some(Health::Critical)).then_some(())
    })
    .await;
    let (code, body) = fetch(&format!("{base}/health/ready")).await;
    assert_eq!(code, 503);
    assert!(body.contains("db: no connection"), "{body}");
    assert_eq!(
        fetch(&format!("{base}/health/live")).await.0,
        200,
        "not ready is still live"
    );

    ok.store(true, Ordering::SeqCst);
    wait_for("passing again", Duration::from_secs(5), || async {
        (health().await == Some(Health::Passing)).then_some(())
    })
    .await;
    svc.shutdown().await;
}

#[derive(Serialize, Deserialize)]
enum Work {
    Job,
}
impl Protocol for Work {
    type Reply = ();
    type Error = String;
}

#[derive(Clone)]
struct Worker {
    id: &'static str,
    done: Arc<AtomicUsize>,
    stops: Arc<Mutex<Vec<&'static str>>>,
}
impl TypedActor for Worker {
    type Msg = Work;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Ctx, _: ()) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: &Ctx, _: Work, _: &mut ()) -> Result<(), String> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_stop(&self, _: &Ctx, _: &mut ()) -> Result<(), ractor::ActorProcessingErr> {
        self.stops.lock().unwrap().push(self.id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_off_deregisters_drains_http_and_mailboxes_and_stops_in_reverse_order(
) {
    let dir = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let stops = Arc::new(Mutex::new(Vec::new()));
    let (d1, s1, d2, s2) = (done.clone(), stops.clone(), done.clone(), stops.clone());
    let svc = Service::builder("drainsvc")
        .child(move |ctx| {
            chassis::worker(
                ctx.node(),
                "drain-a",
                Worker {
                    id: "a",
                    done: d1.clone(),
                    stops: s1.clone(),
                },
                (),
            )
        })
        .child(move |ctx| {
            chassis::worker(
                ctx.node(),
                "drain-b",
                Worker {
                    id: "b",
                    done: d2.clone(),
                    stops: s2.clone(),
                },
                (),
            )
        })
        .http(|_| {
            Router::new().route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    "finished"
                }),
            )
        })
        .readiness_grace(Duration::from_millis(300))
        .start(args("drain-node", dir.path()))
        .await
        .unwrap();
    let base = format!("http://{}", svc.http_addr().unwrap());
    let reg = svc.ctx().registry().clone();
    let mut events = reg.watch(Some("drainsvc".into())).await.unwrap();
    wait_for("passing", Duration::from_secs(5), || async {
        let i = reg.resolve("drainsvc").await.ok()?.into_iter().next()?;
        (i.health == Health::Passing).then_some(())
    })
    .await;
    // 100 jobs queued on b (about 1 s of work), a slow request in flight, then SIGTERM's path.
    let b = chassis::Remote::<Work>::new(svc.node(), "drain-b");
    for _ in 0..100 {
        b.tell(&Work::Job).await.unwrap();
    }
    let slow = tokio::spawn(async move { fetch(&format!("{base}/slow")).await });
    let node = svc.node().clone();
    wait_for(
        "the slow request in flight",
        Duration::from_secs(5),
        || async {
            node.metrics_text()
                .await
                .contains("chassis_http_in_flight{service=\"drainsvc\"} 1")
                .then_some(())
        },
    )
    .await;
    svc.shutdown().await;
    assert_eq!(
        slow.await.unwrap(),
        (200, "finished".to_string()),
        "the in-flight request finished"
    );
    assert_eq!(
        done.load(Ordering::SeqCst),
        100,
        "every queued message was handled"
    );
    assert_eq!(
        *stops.lock().unwrap(),
        vec!["b", "a"],
        "children stopped in reverse order"
    );
    // The registry saw: passing ... then critical, then removed.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        let WatchEvent { event, instance } = ev;
        seen.push(match event {
            WatchKind::Removed => "removed".to_string(),
            _ => format!("{:?}", instance.health),
        });
    }
    let crit = seen
        .iter()
        .position(|s| s == "Critical")
        .unwrap_or_else(|| panic!("no critical: {seen:?}"));
    let removed = seen
        .iter()
        .position(|s| s == "removed")
        .unwrap_or_else(|| panic!("no removal: {seen:?}"));
    assert!(
        crit < removed,
        "readiness off before deregistration: {seen:?}"
    );
}
