//! Where `runtime::ACTOR_BASE_BYTES` comes from: the heap one idle named actor spawned through
//! `Node::spawn` costs (a minimal actor: no state, no queued message), once the live figures'
//! sampler window is full. Counted by a global allocator that keeps the bytes in use, so the
//! figure is the runtime's own (allocator overhead and page rounding aside; `bench memory`
//! measures the resident set).
//!
//! Ignored by default (it takes ~15 s); to measure, in a release build:
//! `cargo test --release -p runtime --test actor_memory_cost -- --ignored --nocapture`.
//! It fails when the constant is off by more than a quarter, so a change that makes actors
//! dearer (or cheaper) shows up here.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runtime::Node;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A minimal actor: no state, waits for a message that never comes.
#[derive(Clone)]
struct Idle;

struct Nothing;

impl ractor::Message for Nothing {}

impl Actor for Idle {
    type Msg = Nothing;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Nothing>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

const ACTORS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn one_idle_named_actor_costs_about_actor_base_bytes() {
    let node = Node::builder()
        .name("mem-cost")
        .without_admin()
        .start()
        .await
        .expect("node starts");
    // one actor first, so lazily built tables (registries, the sampler) exist before counting
    node.spawn("cost-warm", Idle, ()).await.expect("spawn");
    let before = IN_USE.load(Ordering::Relaxed);
    for i in 0..ACTORS {
        node.spawn(&format!("cost-{i:05}"), Idle, ())
            .await
            .expect("spawn");
    }
    let spawned = IN_USE.load(Ordering::Relaxed);
    println!(
        "heap per idle named actor just spawned: {:.0} B",
        (spawned - before) as f64 / ACTORS as f64
    );
    // the sampler's window fills over WINDOW + 1 rounds of a second: wait until the last
    // actor has been up that long (polled, with a deadline)
    let last = format!("cost-{:05}", ACTORS - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tree = node.tree().await.expect("tree");
        let up = tree
            .find(&last)
            .and_then(|t| t.stats.as_ref())
            .map(|s| s.uptime_s)
            .unwrap_or(0.0);
        if up >= 13.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{last} up {up} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = IN_USE.load(Ordering::Relaxed);
    let per_actor = (after - before) as f64 / ACTORS as f64;
    println!(
        "heap per idle named actor: {per_actor:.0} B (ACTOR_BASE_BYTES = {})",
        runtime::ACTOR_BASE_BYTES
    );
    let base = runtime::ACTOR_BASE_BYTES as f64;
    assert!(
        (per_actor - base).abs() <= base / 4.0,
        "measured {per_actor:.0} B per actor, ACTOR_BASE_BYTES is {base}: update it"
    );
    node.shutdown().await;
}

/// The same measurement for bare ractor (`Actor::spawn`, named, no runtime around it): the
/// floor every actor pays, so that the runtime's own share is the difference between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
async fn a_bare_ractor_actor_for_comparison() {
    let (warm, _) = Actor::spawn(Some("bare-warm".into()), Idle, ())
        .await
        .expect("spawn");
    let before = IN_USE.load(Ordering::Relaxed);
    let mut actors = Vec::with_capacity(ACTORS);
    let held = IN_USE.load(Ordering::Relaxed) - before;
    for i in 0..ACTORS {
        let (a, _) = Actor::spawn(Some(format!("bare-{i:05}")), Idle, ())
            .await
            .expect("spawn");
        actors.push(a);
    }
    let after = IN_USE.load(Ordering::Relaxed);
    let per_actor = (after - before - held) as f64 / ACTORS as f64;
    println!(
        "heap per idle named bare ractor actor: {per_actor:.0} B (the handle vector excluded)"
    );
    assert!(per_actor > 0.0, "an actor costs something: {per_actor}");
    for a in actors {
        a.stop(None);
    }
    warm.stop(None);
}
