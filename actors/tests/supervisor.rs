//! OTP `supervisor_SUITE` checks of the supervisor. Timer tests run on paused tokio time
//! (`start_paused`, `advance`), so a 1 ms backoff is told from a 2 s one and the intensity
//! window is seen to expire.
//!
//! | `supervisor_SUITE` case | test here |
//! |---|---|
//! | sup_start_normal | `one_for_one_restarts_only_the_failed_child` (and every test's start) |
//! | sup_start_ignore_init | does not apply: a [`Supervisor`]'s init is its spec, it cannot answer `ignore` (a child can: below) |
//! | sup_start_ignore_child | `ignore_child_and_ignore_temporary_child` |
//! | sup_start_ignore_temporary_child | `ignore_child_and_ignore_temporary_child` |
//! | sup_start_error_return | `a_child_that_fails_to_start_fails_the_supervisor_start` |
//! | sup_start_fail | `a_child_that_fails_to_start_fails_the_supervisor_start` (a failing `pre_start`), `duplicate_child_ids_in_a_spec_are_refused` |
//! | child_returns_error | `dynamic_children_follow_the_otp_api` (`start_child` of a failing child) |
//! | restart_child_returns_error | `restart_child_returns_error` |
//! | sup_stop_infinity | `sup_stop_infinity_waits_and_race_with_an_exiting_child` |
//! | sup_stop_timeout | `shutdown_timeout_kills_a_child_that_does_not_stop_and_brutal_kill_skips_post_stop` |
//! | sup_stop_brutal_kill | `shutdown_timeout_kills_a_child_that_does_not_stop_and_brutal_kill_skips_post_stop` |
//! | sup_stop_race | `sup_stop_infinity_waits_and_race_with_an_exiting_child` |
//! | {permanent, transient, temporary} x {normal, shutdown, abnormal} | `restart_type_by_exit_reason_matrix`, `restart_types_follow_otp` |
//! | one_for_one, one_for_one_escalation | `one_for_one_restarts_only_the_failed_child`, `each_strategy_escalates_and_survives_other_child_fails_restart` |
//! | one_for_all, one_for_all_escalation | `one_for_all_restarts_every_child_in_order`, `each_strategy_escalates_...` |
//! | rest_for_one, rest_for_one_escalation | `rest_for_one_restarts_the_failed_child_and_those_after_it`, `each_strategy_escalates_...` |
//! | *_other_child_fails_restart | `each_strategy_escalates_and_survives_other_child_fails_restart` |
//! | escalation through a nested supervisor | `a_failing_child_supervisor_escalates_to_its_parent` |
//! | simple_one_for_one (and max_children) | `simple_one_for_one_max_children` (one_for_one + `max_children`; no template spec: children are typed `ChildSpec`s) |
//! | child_adm | `dynamic_children_follow_the_otp_api` |
//! | child_specs | partly: specs are typed, so OTP's malformed-map cases cannot be written; what remains (duplicate ids, significant + permanent, significant without auto_shutdown) in `duplicate_child_ids_in_a_spec_are_refused`, `significant_children_and_auto_shutdown` |
//! | sup_flags | does not apply beyond `per_child_intensity_needs_one_for_one`: flags are a typed [`SupervisorSpec`], bad values cannot be written |
//! | multiple_restarts (window expiry) | `multiple_restarts_window_expiry_is_seen`, `exceeding_restart_intensity_stops_the_supervisor_and_its_children` |
//! | hanging_restart_loop | `hanging_restart_loop_keeps_the_supervisor_responsive`, `a_child_whose_restart_fails_is_retried_until_the_intensity_is_exceeded` |
//! | scale_start_stop_many_children | `scale_start_stop_many_children` (10 000 children, prints the times) |
//! | temporary_bystander | `temporary_bystander_is_not_restarted` |
//! | which_children | `dynamic_children_follow_the_otp_api`, `count_children_counts_supervisors` |
//! | count_children (with supervisors) | `count_children_counts_supervisors` |
//! | order_of_children | `order_of_children_is_start_order_not_id_order` |
//! | significant children, auto_shutdown | `significant_children_and_auto_shutdown` |
//! | a hanging `pre_start` times out | `a_hanging_pre_start_times_out` |
//! | backoff (beyond OTP) | `backoff_tells_1ms_from_2s`, `backoff_delays_restarts` |
//! | per-child intensity (Akka) | `per_child_intensity_stops_the_crash_looping_child_alone` |

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

/// Wait for `cond` without letting tokio time move (for paused-time tests): yield to the
/// actors up to a bounded number of times.
async fn settle<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100_000 {
        if cond().await {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

async fn status_of(sup: &ActorRef<SupervisorMsg>, id: &str) -> Option<ChildStatus> {
    which_children(sup)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.status)
}

/// A worker whose `pre_start` takes `delay` (tokio time) on every start after the first `fast`.
#[derive(Clone)]
struct Slow {
    starts: Arc<Mutex<u32>>,
    fast: u32,
    delay: Duration,
}

impl Actor for Slow {
    type Msg = WMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<WMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        let n = {
            let mut s = self.starts.lock().unwrap();
            *s += 1;
            *s
        };
        if n > self.fast {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<WMsg>,
        _: WMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        panic!("crash requested")
    }
}

/// A worker that answers `ignore` from its start.
#[derive(Clone)]
struct Ignorer;

impl Actor for Ignorer {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Err(Box::new(actors::Ignore))
    }
}

#[tokio::test(start_paused = true)]
async fn multiple_restarts_window_expiry_is_seen() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 2,
            period: Duration::from_secs(10),
        })
        .child(worker(&probe, "w"));
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    for n in 1..=2 {
        crash(&probe, "w");
        settle("w restarted", || async {
            restarts_of(&sup, "w").await == n
        })
        .await;
    }
    // The two restarts leave the window: two more are allowed.
    tokio::time::advance(Duration::from_millis(10_001)).await;
    for n in 3..=4 {
        crash(&probe, "w");
        settle("w restarted", || async {
            restarts_of(&sup, "w").await == n
        })
        .await;
    }
    // Just inside the window of the last two: the third gives up.
    tokio::time::advance(Duration::from_millis(9_999)).await;
    crash(&probe, "w");
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("supervisor gives up")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn backoff_tells_1ms_from_2s() {
    for (initial, label) in [
        (Duration::from_millis(1), "1ms"),
        (Duration::from_secs(2), "2s"),
    ] {
        let probe = Arc::new(Probe::default());
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .backoff(Backoff {
                initial,
                max: Duration::from_secs(60),
                reset_after: Duration::from_secs(600),
            })
            .child(worker(&probe, "bo"));
        let (sup, _) = Supervisor::start(None, spec).await.unwrap();
        crash(&probe, "bo");
        settle("bo restarting", || async {
            status_of(&sup, "bo").await == Some(ChildStatus::Restarting)
        })
        .await;
        // Just before the delay: still waiting, and admin calls say so.
        tokio::time::advance(initial - Duration::from_micros(500)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            status_of(&sup, "bo").await,
            Some(ChildStatus::Restarting),
            "{label}"
        );
        assert_eq!(
            restart_child(&sup, "bo").await.unwrap_err(),
            SupervisorError::Restarting("bo".into())
        );
        assert_eq!(
            delete_child(&sup, "bo").await.unwrap_err(),
            SupervisorError::Restarting("bo".into())
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        settle("bo running", || async {
            status_of(&sup, "bo").await == Some(ChildStatus::Running)
        })
        .await;
        // The second consecutive restart waits twice as long.
        crash(&probe, "bo");
        settle("bo restarting again", || async {
            status_of(&sup, "bo").await == Some(ChildStatus::Restarting)
        })
        .await;
        tokio::time::advance(initial * 2 - Duration::from_micros(500)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            status_of(&sup, "bo").await,
            Some(ChildStatus::Restarting),
            "{label} x2"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        settle("bo running again", || async {
            status_of(&sup, "bo").await == Some(ChildStatus::Running)
        })
        .await;
        assert_eq!(restarts_of(&sup, "bo").await, 2);
        sup.stop_and_wait(None, None).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_pre_start_times_out() {
    let hang = |fast| Slow {
        starts: Arc::new(Mutex::new(0)),
        fast,
        delay: Duration::from_secs(3600),
    };
    let (sup, _) = Supervisor::start(None, SupervisorSpec::new(Strategy::OneForOne))
        .await
        .unwrap();
    let begun = tokio::time::Instant::now();
    let spec = ChildSpec::worker("hang", Some("hang-actor".into()), hang(0), ())
        .start_timeout(Some(Duration::from_secs(5)));
    let err = start_child(&sup, spec).await.unwrap_err();
    assert_eq!(
        err,
        SupervisorError::StartFailed {
            id: "hang".into(),
            reason: "start timed out after 5s".into()
        }
    );
    assert_eq!(begun.elapsed(), Duration::from_secs(5));
    assert!(which_children(&sup).await.unwrap().is_empty());
    assert!(ractor::registry::where_is::<&str>("hang-actor").is_none());
    // A static child that hangs fails the supervisor's start like a start error.
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(
        ChildSpec::worker("h", None, hang(0), ()).start_timeout(Some(Duration::from_millis(1))),
    );
    let err = Supervisor::start(None, spec).await.unwrap_err();
    assert!(
        err.to_string().contains("start timed out after 1ms"),
        "{err}"
    );
    // With infinity, only the start's own end counts.
    let spec = ChildSpec::worker(
        "inf",
        None,
        Slow {
            delay: Duration::from_secs(7200),
            ..hang(0)
        },
        (),
    )
    .start_timeout(None);
    let begun = tokio::time::Instant::now();
    start_child(&sup, spec).await.unwrap();
    assert_eq!(begun.elapsed(), Duration::from_secs(7200));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn hanging_restart_loop_keeps_the_supervisor_responsive() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 1_000_000,
            period: Duration::from_secs(3600),
        })
        .child(worker(&probe, "r"))
        .child(worker(&probe, "other"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    probe.set_fail("r", true);
    crash(&probe, "r");
    // The restart keeps failing; between attempts the supervisor answers calls.
    for _ in 0..20 {
        let children = which_children(&sup).await.unwrap();
        assert_eq!(children[0].status, ChildStatus::Restarting);
        assert_eq!(children[1].status, ChildStatus::Running);
        assert_eq!(
            restart_child(&sup, "r").await.unwrap_err(),
            SupervisorError::Restarting("r".into())
        );
    }
    assert!(snapshot(&sup).await.unwrap().find("r").is_some());
    // terminate_child cancels the loop.
    terminate_child(&sup, "r").await.unwrap();
    assert_eq!(status_of(&sup, "r").await, Some(ChildStatus::Stopped));
    probe.set_fail("r", false);
    restart_child(&sup, "r").await.unwrap();
    assert_eq!(status_of(&sup, "r").await, Some(ChildStatus::Running));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn restart_child_returns_error() {
    let probe = Arc::new(Probe::default());
    let (sup, _) = Supervisor::start(None, spec3(&probe, Strategy::OneForOne))
        .await
        .unwrap();
    terminate_child(&sup, "a").await.unwrap();
    probe.set_fail("a", true);
    let err = restart_child(&sup, "a").await.unwrap_err();
    assert_eq!(
        err,
        SupervisorError::StartFailed {
            id: "a".into(),
            reason: "Actor panicked during startup 'a refuses to start'".into()
        }
    );
    assert_eq!(status_of(&sup, "a").await, Some(ChildStatus::Stopped));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn ignore_child_and_ignore_temporary_child() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(ChildSpec::worker("ign", None, Ignorer, ()))
        .child(ChildSpec::worker("ign-temp", None, Ignorer, ()).restart(Restart::Temporary))
        .child(worker(&probe, "w"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    let children = which_children(&sup).await.unwrap();
    let seen: Vec<(&str, ChildStatus)> =
        children.iter().map(|c| (c.id.as_str(), c.status)).collect();
    assert_eq!(
        seen,
        vec![("ign", ChildStatus::Stopped), ("w", ChildStatus::Running)]
    );
    // Dynamically: the spec is kept (not running), a temporary one is not.
    assert_eq!(
        start_child(&sup, ChildSpec::worker("dyn", None, Ignorer, ()))
            .await
            .unwrap_err(),
        SupervisorError::Ignored("dyn".into())
    );
    assert_eq!(
        start_child(
            &sup,
            ChildSpec::worker("dyn-t", None, Ignorer, ()).restart(Restart::Temporary)
        )
        .await
        .unwrap_err(),
        SupervisorError::Ignored("dyn-t".into())
    );
    let ids: Vec<String> = which_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["ign", "w", "dyn"]);
    let count = count_children(&sup).await.unwrap();
    assert_eq!((count.specs, count.active), (3, 1));
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn restart_type_by_exit_reason_matrix() {
    // (restart type, exit, restarted?)
    let cases = [
        (Restart::Permanent, "normal", true),
        (Restart::Permanent, "shutdown", true),
        (Restart::Permanent, "abnormal", true),
        (Restart::Transient, "normal", false),
        (Restart::Transient, "shutdown", false),
        (Restart::Transient, "abnormal", true),
        (Restart::Temporary, "normal", false),
        (Restart::Temporary, "shutdown", false),
        (Restart::Temporary, "abnormal", false),
    ];
    for (restart, exit, restarted) in cases {
        let probe = Arc::new(Probe::default());
        let spec =
            SupervisorSpec::new(Strategy::OneForOne).child(worker(&probe, "c").restart(restart));
        let (sup, _) = Supervisor::start(None, spec).await.unwrap();
        let cell = probe.cell("c");
        match exit {
            "normal" => cell
                .send_message(WMsg::Stop(Some("normal".into())))
                .unwrap(),
            "shutdown" => cell
                .send_message(WMsg::Stop(Some("shutdown".into())))
                .unwrap(),
            _ => cell.send_message(WMsg::Crash).unwrap(),
        }
        let case = format!("{restart} x {exit}");
        wait_until(&case, || async {
            let st = status_of(&sup, "c").await;
            match (restarted, restart) {
                (true, _) => restarts_of(&sup, "c").await == 1 && st == Some(ChildStatus::Running),
                (false, Restart::Temporary) => st.is_none(),
                (false, _) => st == Some(ChildStatus::Stopped),
            }
        })
        .await;
        sup.stop_and_wait(None, None).await.unwrap();
    }
}

#[tokio::test]
async fn each_strategy_escalates_and_survives_other_child_fails_restart() {
    for strategy in [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ] {
        // escalation: more than 1 restart in the window stops the supervisor.
        let probe = Arc::new(Probe::default());
        let spec = spec3(&probe, strategy).intensity(Intensity {
            max_restarts: 1,
            period: Duration::from_secs(60),
        });
        let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
        crash(&probe, "a");
        wait_until("a restarted", || async {
            restarts_of(&sup, "a").await == 1
        })
        .await;
        crash(&probe, "a");
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap_or_else(|_| panic!("{strategy:?} escalates"))
            .unwrap();

        // other_child_fails_restart: c's restart fails (for one_for_one: a's own) and is retried
        // until it succeeds within the intensity.
        let probe = Arc::new(Probe::default());
        let spec = spec3(&probe, strategy).intensity(Intensity {
            max_restarts: 1_000_000,
            period: Duration::from_secs(3600),
        });
        let (sup, _) = Supervisor::start(None, spec).await.unwrap();
        let retried = if strategy == Strategy::OneForOne {
            "a"
        } else {
            "c"
        };
        probe.set_fail(retried, true);
        crash(&probe, "a");
        wait_until("restart failing", || async {
            status_of(&sup, retried).await == Some(ChildStatus::Restarting)
        })
        .await;
        probe.set_fail(retried, false);
        wait_until("all running again", || async {
            which_children(&sup)
                .await
                .unwrap()
                .iter()
                .all(|c| c.status == ChildStatus::Running)
        })
        .await;
        assert_eq!(
            sup.get_status(),
            ractor::ActorStatus::Running,
            "{strategy:?}"
        );
        sup.stop_and_wait(None, None).await.unwrap();
    }
}

#[tokio::test]
async fn temporary_bystander_is_not_restarted() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .child(worker(&probe, "p"))
        .child(worker(&probe, "temp").restart(Restart::Temporary));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    probe.clear();
    crash(&probe, "p");
    wait_until("p restarted", || async {
        restarts_of(&sup, "p").await == 1
    })
    .await;
    let ids: Vec<String> = which_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["p"]);
    assert_eq!(probe.events(), vec!["stop temp", "start p"]);
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn order_of_children_is_start_order_not_id_order() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .child(worker(&probe, "zeta"))
        .child(worker(&probe, "alpha"))
        .child(worker(&probe, "mu"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    start_child(&sup, worker(&probe, "beta")).await.unwrap();
    let order = || async {
        which_children(&sup)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(order().await, vec!["zeta", "alpha", "mu", "beta"]);
    probe.clear();
    crash(&probe, "alpha");
    wait_until("all restarted", || async {
        restarts_of(&sup, "beta").await == 1
    })
    .await;
    assert_eq!(
        probe.events(),
        vec![
            "stop beta",
            "stop mu",
            "stop zeta",
            "start zeta",
            "start alpha",
            "start mu",
            "start beta"
        ]
    );
    assert_eq!(order().await, vec!["zeta", "alpha", "mu", "beta"]);
    probe.clear();
    sup.stop_and_wait(None, None).await.unwrap();
    assert_eq!(
        probe.events(),
        vec!["stop beta", "stop mu", "stop alpha", "stop zeta"]
    );
}

#[tokio::test]
async fn count_children_counts_supervisors() {
    let probe = Arc::new(Probe::default());
    let inner = SupervisorSpec::new(Strategy::OneForOne).child(worker(&probe, "leaf"));
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(worker(&probe, "w1"))
        .child(ChildSpec::supervisor("inner", None, inner))
        .child(worker(&probe, "w2"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    terminate_child(&sup, "w2").await.unwrap();
    let c = count_children(&sup).await.unwrap();
    assert_eq!((c.specs, c.active, c.supervisors, c.workers), (3, 2, 1, 2));
    let kinds: Vec<ChildKind> = which_children(&sup)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![ChildKind::Worker, ChildKind::Supervisor, ChildKind::Worker]
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn sup_stop_infinity_waits_and_race_with_an_exiting_child() {
    let probe = Arc::new(Probe::default());
    let slow = ChildSpec::worker(
        "slow",
        None,
        Worker {
            name: "slow".into(),
            probe: probe.clone(),
            slow_stop: Some(Duration::from_millis(200)),
        },
        (),
    )
    .shutdown(Shutdown::Infinity);
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(slow)
        .child(worker(&probe, "racer"));
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    // race: the child crashes while it is being terminated; it ends stopped, not restarted.
    crash(&probe, "racer");
    terminate_child(&sup, "racer").await.unwrap();
    assert_eq!(status_of(&sup, "racer").await, Some(ChildStatus::Stopped));
    assert_eq!(restarts_of(&sup, "racer").await, 0);
    probe.clear();
    // infinity: the supervisor waits for the slow post_stop, however long it takes.
    sup.stop_and_wait(None, None).await.unwrap();
    assert_eq!(probe.events(), vec!["stop slow"]);
}

#[tokio::test]
async fn simple_one_for_one_max_children() {
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne).max_children(2);
    let (sup, _) = Supervisor::start(None, spec).await.unwrap();
    start_child(&sup, worker(&probe, "s1")).await.unwrap();
    start_child(&sup, worker(&probe, "s2")).await.unwrap();
    assert_eq!(
        start_child(&sup, worker(&probe, "s3")).await.unwrap_err(),
        SupervisorError::MaxChildren(2)
    );
    terminate_child(&sup, "s1").await.unwrap();
    delete_child(&sup, "s1").await.unwrap();
    start_child(&sup, worker(&probe, "s3")).await.unwrap();
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test]
async fn significant_children_and_auto_shutdown() {
    // any_significant: one significant child exiting normally stops the supervisor, normally.
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .auto_shutdown(actors::AutoShutdown::AnySignificant)
        .child(worker(&probe, "other"))
        .child(
            worker(&probe, "sig")
                .restart(Restart::Transient)
                .significant(true),
        );
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    probe
        .cell("sig")
        .send_message(WMsg::Stop(Some("normal".into())))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("auto shutdown")
        .unwrap();
    assert!(probe.events().contains(&"stop other".to_string()));
    drop(sup);

    // all_significant: only when the last significant child is gone.
    let probe = Arc::new(Probe::default());
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .auto_shutdown(actors::AutoShutdown::AllSignificant)
        .child(
            worker(&probe, "s1")
                .restart(Restart::Temporary)
                .significant(true),
        )
        .child(
            worker(&probe, "s2")
                .restart(Restart::Transient)
                .significant(true),
        );
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    // An abnormal exit of a transient significant child is a restart, not a shutdown.
    crash(&probe, "s2");
    wait_until("s2 restarted", || async {
        restarts_of(&sup, "s2").await == 1
    })
    .await;
    probe.cell("s1").send_message(WMsg::Stop(None)).unwrap();
    wait_until("s1 gone", || async {
        status_of(&sup, "s1").await.is_none()
    })
    .await;
    assert_eq!(sup.get_status(), ractor::ActorStatus::Running);
    probe
        .cell("s2")
        .send_message(WMsg::Stop(Some("shutdown".into())))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("auto shutdown")
        .unwrap();

    // never: significant children are refused, and so are significant permanent ones.
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(
        worker(&probe, "x")
            .restart(Restart::Transient)
            .significant(true),
    );
    let err = Supervisor::start(None, spec).await.unwrap_err();
    assert!(err.to_string().contains("auto_shutdown is never"), "{err}");
    let (sup, _) = Supervisor::start(
        None,
        SupervisorSpec::new(Strategy::OneForOne)
            .auto_shutdown(actors::AutoShutdown::AnySignificant),
    )
    .await
    .unwrap();
    let err = start_child(&sup, worker(&probe, "p").significant(true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SupervisorError::BadSpec(ref m) if m.contains("permanent")),
        "{err}"
    );
    sup.stop_and_wait(None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_start_stop_many_children() {
    #[derive(Clone)]
    struct Idle;
    impl Actor for Idle {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }
    const N: usize = 10_000;
    let spec = SupervisorSpec::new(Strategy::OneForOne).max_children(N);
    let (sup, handle) = Supervisor::start(None, spec).await.unwrap();
    let started = std::time::Instant::now();
    for i in 0..N {
        start_child(&sup, ChildSpec::worker(format!("c{i}"), None, Idle, ()))
            .await
            .unwrap();
    }
    let start_time = started.elapsed();
    let c = count_children(&sup).await.unwrap();
    assert_eq!((c.specs, c.active), (N, N));
    let stopping = std::time::Instant::now();
    sup.stop(None);
    tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("stopped")
        .unwrap();
    let stop_time = stopping.elapsed();
    eprintln!("scale_start_stop_many_children: {N} children started in {start_time:?}, stopped in {stop_time:?}");
}
