//! The `proxy` supervisor (rest_for_one): a killed controller comes back with an empty view,
//! and its two watches, restarted after it, give it the route table again, so the next
//! snapshot holds the routes from before the kill and the ones after.

use std::time::Duration;

use actors::{ChildStatus, SupervisorMsg};
use proxy_ctl::{snapshot::SnapshotCell, table::RouteTable, PathMatch, Proxy, ProxyOptions, Route};
use ractor::ActorRef;
use registry::kv::{self, KvConfig};

/// Wait until `f` holds (polled every 20 ms, for at most 10 s); panic naming `what` if not.
async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    testkit::wait_until_async(what, Duration::from_secs(10), Duration::from_millis(20), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn clusters(cell: &SnapshotCell) -> Vec<String> {
    cell.get().clusters.resources.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_controller_gets_the_route_table_again_from_its_restarted_watches() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = runtime::Node::builder()
        .name("proxy-restart")
        .admin_addr("127.0.0.1:0")
        .data_dir(dir.path())
        .start()
        .await
        .expect("node");
    let kv = kv::start(&node, KvConfig::default()).await.expect("kv");
    let registry = registry::service::Registry::start(&node)
        .await
        .expect("registry");
    let proxy = Proxy::start(&node, &registry, &ProxyOptions::default())
        .await
        .expect("proxy");
    let table = RouteTable::new(kv.clone());
    let route = |name: &str| Route::new(name, PathMatch::Prefix(format!("/{name}")), name);
    table.add(route("before")).await.expect("add");
    eventually("the first route in a snapshot", || async {
        clusters(proxy.snapshot()) == ["before"]
    })
    .await;

    let system = node.system_supervisor().expect("system");
    let sup: ActorRef<SupervisorMsg> = actors::child_cell(&system, "proxy")
        .await
        .expect("ask")
        .expect("proxy runs")
        .into();
    let controller = actors::child_cell(&sup, "proxy-controller")
        .await
        .expect("ask")
        .expect("the controller runs");
    controller.kill();
    eventually("the controller and both watches running again", || async {
        let Ok(children) = actors::which_children(&sup).await else {
            return false;
        };
        let controller_back = children
            .iter()
            .any(|c| c.id == "proxy-controller" && c.restarts == 1);
        controller_back && children.iter().all(|c| c.status == ChildStatus::Running)
    })
    .await;

    table.add(route("after")).await.expect("add");
    eventually("both routes in a snapshot", || async {
        clusters(proxy.snapshot()) == ["after", "before"]
    })
    .await;
    node.shutdown().await;
}
