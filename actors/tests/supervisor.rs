//! OTP `supervisor_SUITE`-style checks of the supervisor: strategies, restart types, intensity,
//! escalation, start failure, ordered stop, shutdown policies, dynamic children, backoff, snapshots.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actors::{
    count_children, delete_child, restart_child, snapshot, start_child, terminate_child,
    which_children, Backoff, ChildKind, ChildSpec, ChildStatus, Intensity, IntensityScope, Restart,
    Shutdown, Strategy, Supervisor, SupervisorError, SupervisorMsg, SupervisorSpec,
};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

#[derive(Default)]
struct Probe {
    log: Mutex<Vec<String>>,
    cells: Mutex<HashMap<String, ActorCell>>,
    fail_start: Mutex<HashMap<String, bool>>,
}

impl Probe {
    fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
    fn cell(&self, name: &str) -> ActorCell {
        self.cells.lock().unwrap()[name].clone()
    }
    fn set_fail(&self, name: &str, fail: bool) {
        self.fail_start.lock().unwrap().insert(name.into(), fail);
    }
}

#[derive(Clone)]
struct Worker {
    name: String,
    probe: Arc<Probe>,
    slow_stop: Option<Duration>,
}

enum WMsg {
    Crash,
    Stop(Option<String>),
}
impl ractor::Message for WMsg {}

impl Actor for Worker {
    type Msg = WMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<WMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        if self
            .probe
            .fail_start
            .lock()
            .unwrap()
            .get(&self.name)
            .copied()
            .unwrap_or(false)
        {
            return Err(From::from(format!("{} refuses to start", self.name)));
        }
        self.probe
            .log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        self.probe
            .cells
            .lock()
            .unwrap()
            .insert(self.name.clone(), myself.get_cell());
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<WMsg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        if let Some(d) = self.slow_stop {
            tokio::time::sleep(d).await;
        }
        self.probe
            .log
            .lock()
            .unwrap()
            .push(format!("stop {}", self.name));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WMsg>,
        msg: WMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WMsg::Crash => panic!("crash requested"),
            WMsg::Stop(reason) => myself.stop(reason),
        }
        Ok(())
    }
}

fn worker(probe: &Arc<Probe>, name: &str) -> ChildSpec {
    ChildSpec::worker(
        name,
        None,
        Worker {
            name: name.into(),
            probe: probe.clone(),
            slow_stop: None,
        },
        (),
    )
}

fn crash(probe: &Probe, name: &str) {
    probe.cell(name).send_message(WMsg::Crash).unwrap();
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ids(sup: &ActorRef<SupervisorMsg>) -> HashMap<String, Option<String>> {
    which_children(sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id, c.actor_id))
        .collect()
}

async fn restarts_of(sup: &ActorRef<SupervisorMsg>, id: &str) -> u32 {
    which_children(sup)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.restarts)
        .unwrap_or(0)
}

fn spec3(probe: &Arc<Probe>, strategy: Strategy) -> SupervisorSpec {
    SupervisorSpec::new(strategy)
        .intensity(Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        })
        .child(worker(probe, "a"))
        .child(worker(probe, "b"))
        .child(worker(probe, "c"))
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, spec3(&probe, Strategy::OneForOne))
        .await
        .unwrap();
    let before = ids(&sup).await;
    probe.clear();
    crash(&probe, "b");
    wait_until("b restarted", || async {
        restarts_of(&sup, "b").await == 1
    })
    .await;
    let after = ids(&sup).await;
    assert_eq!(before["a"], after["a"]);
    assert_eq!(before["c"], after["c"]);
    assert_ne!(before["b"], after["b"]);
    assert_eq!(probe.events(), vec!["start b"]);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn one_for_all_restarts_every_child_in_order() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, spec3(&probe, Strategy::OneForAll))
        .await
        .unwrap();
    let before = ids(&sup).await;
    probe.clear();
    crash(&probe, "b");
    wait_until("all restarted", || async {
        restarts_of(&sup, "c").await == 1
    })
    .await;
    let after = ids(&sup).await;
    for id in ["a", "b", "c"] {
        assert_ne!(before[id], after[id], "{id} should have a new actor");
    }
    // The survivors stop in reverse order, then all start in spec order.
    assert_eq!(
        probe.events(),
        vec!["stop c", "stop a", "start a", "start b", "start c"]
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, spec3(&probe, Strategy::RestForOne))
        .await
        .unwrap();
    let before = ids(&sup).await;
    probe.clear();
    crash(&probe, "b");
    wait_until("b and c restarted", || async {
        restarts_of(&sup, "c").await == 1
    })
    .await;
    let after = ids(&sup).await;
    assert_eq!(before["a"], after["a"]);
    assert_ne!(before["b"], after["b"]);
    assert_ne!(before["c"], after["c"]);
    assert_eq!(probe.events(), vec!["stop c", "start b", "start c"]);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn restart_types_follow_otp() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 10,
            period: Duration::from_secs(10),
        })
        .child(worker(&probe, "perm"))
        .child(worker(&probe, "trans").restart(Restart::Transient))
        .child(worker(&probe, "temp").restart(Restart::Temporary))
        .child(worker(&probe, "trans2").restart(Restart::Transient));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();

    // permanent: restarted even after a normal exit
    probe.cell("perm").send_message(WMsg::Stop(None)).unwrap();
    wait_until("perm restarted", || async {
        restarts_of(&sup, "perm").await == 1
    })
    .await;

    // transient: a normal exit is final, the spec stays
    probe
        .cell("trans")
        .send_message(WMsg::Stop(Some("normal".into())))
        .unwrap();
    wait_until("trans stopped", || async {
        which_children(&sup)
            .await
            .unwrap()
            .iter()
            .any(|c| c.id == "trans" && c.status == ChildStatus::Stopped)
    })
    .await;
    // transient: an abnormal exit is restarted
    crash(&probe, "trans2");
    wait_until("trans2 restarted", || async {
        restarts_of(&sup, "trans2").await == 1
    })
    .await;

    // temporary: never restarted, and its spec is deleted
    crash(&probe, "temp");
    wait_until("temp gone", || async {
        !ids(&sup).await.contains_key("temp")
    })
    .await;
    assert_eq!(restarts_of(&sup, "trans").await, 0);
    let count = count_children(&sup).await.unwrap();
    assert_eq!((count.specs, count.active), (3, 2));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn exceeding_restart_intensity_stops_the_supervisor_and_its_children() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 2,
            period: Duration::from_secs(30),
        })
        .child(worker(&probe, "x"))
        .child(worker(&probe, "y"));
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    for n in 1..=2 {
        crash(&probe, "x");
        wait_until("x restarted", || async {
            restarts_of(&sup, "x").await == n
        })
        .await;
    }
    probe.clear();
    crash(&probe, "x");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("supervisor should stop")
        .unwrap();
    assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
    // y is shut down (in order) before the supervisor exits; x is not started again.
    assert_eq!(probe.events(), vec!["stop y"]);
}

#[tokio::test]
async fn a_failing_child_supervisor_escalates_to_its_parent() {
    let probe = Arc::new(Probe::default());
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 1,
            period: Duration::from_secs(30),
        })
        .child(worker(&probe, "leaf"));
    let root = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 5,
            period: Duration::from_secs(30),
        })
        .child(worker(&probe, "sibling"))
        .child(ChildSpec::supervisor("inner", None, inner));
    let (sup, _) = Supervisor::start(None, root).await.unwrap();
    let sibling_before = ids(&sup).await["sibling"].clone();
    let inner_before = ids(&sup).await["inner"].clone();

    crash(&probe, "leaf");
    wait_until("leaf restarted", || async {
        let snap = snapshot(&sup).await.unwrap();
        snap.find("leaf").is_some_and(|l| l.restarts == 1)
    })
    .await;
    crash(&probe, "leaf"); // second restart in the window: the inner supervisor gives up
    wait_until("inner restarted by root", || async {
        restarts_of(&sup, "inner").await == 1
    })
    .await;
    let after = ids(&sup).await;
    assert_ne!(after["inner"], inner_before);
    assert_eq!(
        after["sibling"], sibling_before,
        "one_for_one keeps the sibling"
    );
    let snap = snapshot(&sup).await.unwrap();
    let leaf = snap.find("leaf").unwrap();
    assert_eq!(leaf.status, ChildStatus::Running);
    assert_eq!(
        leaf.restarts, 0,
        "a fresh inner supervisor starts a fresh leaf"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_child_that_fails_to_start_fails_the_supervisor_start() {
    let probe = Arc::new(Probe::default());
    probe.set_fail("b", true);
    let err = Supervisor::start(None, spec3(&probe, Strategy::OneForOne))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("'b' failed to start"), "{text}");
    assert!(text.contains("b refuses to start"), "{text}");
    // a was started then stopped again; c was never started.
    assert_eq!(probe.events(), vec!["start a", "stop a"]);
}

#[tokio::test]
async fn duplicate_child_ids_in_a_spec_are_refused() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(worker(&probe, "a"))
        .child(worker(&probe, "a"));
    let err = Supervisor::start(None, spec).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn children_stop_in_reverse_start_order() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, spec3(&probe, Strategy::OneForOne))
        .await
        .unwrap();
    assert_eq!(probe.events(), vec!["start a", "start b", "start c"]);
    probe.clear();
    sup.stop_and_wait(None, None).await.unwrap();
    assert_eq!(probe.events(), vec!["stop c", "stop b", "stop a"]);
}

#[tokio::test]
async fn shutdown_timeout_kills_a_child_that_does_not_stop_and_brutal_kill_skips_post_stop() {
    let probe = Arc::new(Probe::default());
    let slow = ChildSpec::worker(
        "slow",
        None,
        Worker {
            name: "slow".into(),
            probe: probe.clone(),
            slow_stop: Some(Duration::from_secs(3600)),
        },
        (),
    )
    .shutdown(Shutdown::Timeout(Duration::from_millis(100)));
    let brutal = worker(&probe, "brutal").shutdown(Shutdown::BrutalKill);
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(slow)
        .child(brutal);
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    probe.clear();
    tokio::time::timeout(Duration::from_secs(10), terminate_child(&sup, "slow"))
        .await
        .expect("terminate_child must not wait for a child that ignores its shutdown timeout")
        .unwrap();
    terminate_child(&sup, "brutal").await.unwrap();
    assert!(probe.events().is_empty(), "{:?}", probe.events());
    let statuses: Vec<ChildStatus> = which_children(&sup)
        .await
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![ChildStatus::Stopped, ChildStatus::Stopped]);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn dynamic_children_follow_the_otp_api() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, SupervisorSpec::new(Strategy::OneForOne))
        .await
        .unwrap();
    start_child(&sup, worker(&probe, "d1")).await.unwrap();
    start_child(&sup, worker(&probe, "d2")).await.unwrap();
    assert_eq!(
        start_child(&sup, worker(&probe, "d1")).await.unwrap_err(),
        SupervisorError::AlreadyPresent("d1".into())
    );
    probe.set_fail("d3", true);
    let err = start_child(&sup, worker(&probe, "d3")).await.unwrap_err();
    assert!(matches!(err, SupervisorError::StartFailed { ref id, .. } if id == "d3"));
    assert!(!ids(&sup).await.contains_key("d3"));

    assert_eq!(
        delete_child(&sup, "d1").await.unwrap_err(),
        SupervisorError::Running("d1".into())
    );
    assert_eq!(
        restart_child(&sup, "d1").await.unwrap_err(),
        SupervisorError::Running("d1".into())
    );
    terminate_child(&sup, "d1").await.unwrap();
    let count = count_children(&sup).await.unwrap();
    assert_eq!((count.specs, count.active, count.workers), (2, 1, 2));
    let old = probe.cell("d1").get_id();
    let cell = restart_child(&sup, "d1").await.unwrap();
    assert_ne!(cell.get_id(), old);
    terminate_child(&sup, "d2").await.unwrap();
    delete_child(&sup, "d2").await.unwrap();
    let left: Vec<String> = which_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, vec!["d1"]);
    assert_eq!(
        terminate_child(&sup, "nope").await.unwrap_err(),
        SupervisorError::NotFound("nope".into())
    );
    assert_eq!(
        delete_child(&sup, "nope").await.unwrap_err(),
        SupervisorError::NotFound("nope".into())
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn a_child_whose_restart_fails_is_retried_until_the_intensity_is_exceeded() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 3,
            period: Duration::from_secs(30),
        })
        .child(worker(&probe, "r"));
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    probe.set_fail("r", true);
    crash(&probe, "r");
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("supervisor gives up")
        .unwrap();
    assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
}

#[tokio::test]
async fn backoff_delays_restarts() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .backoff(Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(60),
        })
        .child(worker(&probe, "bo"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    crash(&probe, "bo");
    wait_until("bo waiting for its restart", || async {
        which_children(&sup).await.unwrap()[0].status == ChildStatus::Restarting
    })
    .await;
    wait_until("bo restarted", || async {
        which_children(&sup).await.unwrap()[0].status == ChildStatus::Running
    })
    .await;
    assert_eq!(restarts_of(&sup, "bo").await, 1);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn snapshot_describes_the_whole_tree() {
    let probe = Arc::new(Probe::default());
    let inner = SupervisorSpec::new(Strategy::OneForAll).child(worker(&probe, "leaf"));
    let root = SupervisorSpec::new(Strategy::OneForOne)
        .child(worker(&probe, "w"))
        .child(ChildSpec::supervisor("inner", None, inner));
    let (sup, _) = Supervisor::start(Some("snap-root".into()), root)
        .await
        .unwrap();
    crash(&probe, "w");
    wait_until("w restarted", || async {
        restarts_of(&sup, "w").await == 1
    })
    .await;
    let snap = snapshot(&sup).await.unwrap();
    assert_eq!(snap.name, "snap-root");
    assert_eq!(snap.kind, ChildKind::Supervisor);
    let names: Vec<&str> = snap.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["w", "inner"]);
    assert_eq!(snap.children[0].restarts, 1);
    assert_eq!(snap.children[1].kind, ChildKind::Supervisor);
    assert_eq!(snap.children[1].strategy.as_deref(), Some("one_for_all"));
    assert_eq!(snap.children[1].children[0].name, "leaf");
    assert_eq!(snap.count_running(), 4);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["children"][1]["children"][0]["kind"], "worker");
    assert_eq!(json["children"][1]["children"][0]["status"], "running");
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn per_child_intensity_stops_the_crash_looping_child_alone() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 3,
            period: Duration::from_secs(30),
        })
        .intensity_scope(IntensityScope::PerChild)
        .child(worker(&probe, "loop"))
        .child(worker(&probe, "bystander"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    let bystander = ids(&sup).await["bystander"].clone();
    for n in 1..=3 {
        crash(&probe, "loop");
        wait_until("loop restarted", || async {
            restarts_of(&sup, "loop").await == n
        })
        .await;
    }
    crash(&probe, "loop"); // the 4th restart in the window is one too many, for this child only
    wait_until("loop given up", || async {
        which_children(&sup).await.unwrap()[0].status == ChildStatus::Failed
    })
    .await;
    let children = which_children(&sup).await.unwrap();
    let reason = children[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("more than 3 restarts") && reason.contains("crash requested"),
        "{reason}"
    );
    assert_eq!(children[1].status, ChildStatus::Running);
    assert_eq!(
        children[1].actor_id, bystander,
        "the bystander was never restarted"
    );
    assert_eq!(sup.get_status(), ractor::ActorStatus::Running);
    let snap = snapshot(&sup).await.unwrap();
    let node = snap.find("loop").unwrap();
    assert_eq!(node.status, ChildStatus::Failed);
    assert_eq!(node.reason.as_deref(), Some(reason.as_str()));
    // Asked explicitly, it starts again with a fresh count.
    restart_child(&sup, "loop").await.unwrap();
    crash(&probe, "loop");
    wait_until("loop restarted after restart_child", || async {
        which_children(&sup).await.unwrap()[0].status == ChildStatus::Running
            && restarts_of(&sup, "loop").await == 4
    })
    .await;
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn per_child_intensity_needs_one_for_one() {
    let spec = SupervisorSpec::new(Strategy::OneForAll).intensity_scope(IntensityScope::PerChild);
    let err = Supervisor::start(None, spec).await.unwrap_err();
    assert!(err.to_string().contains("needs one_for_one"), "{err}");
}
