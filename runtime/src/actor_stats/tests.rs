//! Unit tests of the live figures: the histogram, the sampler's window, memory estimates.

use super::histogram::{bucket_upper, SUB};
use super::*;

#[test]
fn buckets_are_ordered_and_contain_their_values() {
    let mut last = 0;
    for ns in [
        0u64,
        1,
        3,
        4,
        5,
        7,
        8,
        100,
        999,
        1_000,
        65_535,
        1 << 30,
        u64::MAX,
    ] {
        let b = bucket_of(ns);
        assert!(b >= last, "{ns}: bucket {b} < {last}");
        last = b;
        if b < BUCKETS - 1 {
            assert!(ns < bucket_upper(b), "{ns} not under its bucket's edge");
            if b > 0 {
                assert!(
                    ns >= bucket_upper(b - 1),
                    "{ns} belongs to an earlier bucket"
                );
            }
        }
    }
}

#[test]
fn a_bucket_edge_is_at_most_a_quarter_above_its_lower_edge() {
    for b in SUB as usize..BUCKETS - 1 {
        let lo = bucket_upper(b - 1) as f64;
        let hi = bucket_upper(b) as f64;
        assert!(hi / lo <= 1.25 + 1e-9, "bucket {b}: {lo}..{hi}");
    }
}

#[test]
fn p99_is_the_slow_tail_not_the_mean() {
    let f = Arc::new(ActorFigures::default());
    for _ in 0..990 {
        f.record(Duration::from_micros(10));
    }
    for _ in 0..10 {
        f.record(Duration::from_millis(5));
    }
    let counts = f.sample(Instant::now()).dense();
    let p99 = quantile(&counts, 0.99);
    assert!((10_000..=12_500).contains(&p99), "p99 {p99} ns");
    let p999 = quantile(&counts, 0.999);
    assert!((5_000_000..=6_250_000).contains(&p999), "p99.9 {p999} ns");
    assert_eq!(quantile(&[0; 4], 0.99), 0);
}

#[test]
fn an_idle_window_shows_zero_and_the_next_burst_is_rated_over_the_last_second() {
    let f = Arc::new(ActorFigures::default());
    let t0 = Instant::now();
    for _ in 0..100 {
        f.record(Duration::from_micros(10));
    }
    f.tick(t0, None);
    for _ in 0..100 {
        f.record(Duration::from_micros(10));
    }
    f.tick(t0 + Duration::from_secs(1), None);
    assert!(f.derived().rate > 50.0, "busy: {:?}", f.derived());
    // idle for longer than the window: the figures drop to zero, one sample is kept
    for s in 2..(WINDOW as u64 + 5) {
        f.tick(t0 + Duration::from_secs(s), None);
    }
    assert_eq!(f.derived().rate, 0.0);
    assert_eq!(f.window.lock().unwrap().samples.len(), 1);
    // a minute later, 30 messages in a second are 30/s, not 30 over the idle minute
    let later = t0 + Duration::from_secs(60);
    f.tick(later, None);
    for _ in 0..30 {
        f.record(Duration::from_micros(10));
    }
    f.tick(later + Duration::from_secs(1), None);
    let d = f.derived();
    assert!((d.rate - 30.0).abs() < 1e-6, "{d:?}");
}

#[test]
fn the_window_gives_rate_mean_and_p99_of_the_recent_messages() {
    let f = Arc::new(ActorFigures::default());
    let t0 = Instant::now();
    f.tick(t0, None);
    for _ in 0..200 {
        f.record(Duration::from_micros(100));
    }
    f.tick(t0 + Duration::from_secs(2), None);
    let d = f.derived();
    assert!((d.rate - 100.0).abs() < 1e-9, "{d:?}");
    assert!((d.mean_us - 100.0).abs() < 1e-9, "{d:?}");
    assert!((100.0..=125.0).contains(&d.p99_us), "{d:?}");
    assert!((d.window_s - 2.0).abs() < 1e-9);
    // nothing new: the rate falls to zero once the window has moved past the burst
    for s in 3..(3 + WINDOW as u64 + 1) {
        f.tick(t0 + Duration::from_secs(s), None);
    }
    assert_eq!(f.derived().rate, 0.0);
    assert_eq!(f.handled(), 200);
}

#[test]
fn failures_keep_the_last_few() {
    let f = Arc::new(ActorFigures::default());
    for i in 0..8 {
        f.failed(format!("boom {i}"));
    }
    let live = f.live(0);
    assert_eq!(live.failures.len(), FAILURES_KEPT);
    assert_eq!(live.failures.last().map(String::as_str), Some("boom 7"));
    assert_eq!(live.failures[0], "boom 3");
}

#[test]
fn the_shallow_estimate_grows_with_the_state_and_the_queued_messages() {
    let f = Arc::new(ActorFigures::default());
    assert_eq!(f.memory(0), None, "no estimate before the actor started");
    f.set_shape(MemoryShape::of::<[u8; 40_000], [u64; 32]>());
    let envelope = std::mem::size_of::<ractor::message::BoxedMessage>() as u64;
    assert_eq!(f.memory(0), Some((ACTOR_BASE_BYTES + 40_000, false)));
    // 100 queued messages of 256 bytes, each in ractor's envelope
    assert_eq!(
        f.memory(100),
        Some((ACTOR_BASE_BYTES + 40_000 + 100 * (256 + envelope), false))
    );
    let live = f.live(100);
    assert_eq!(
        live.memory_bytes,
        Some(ACTOR_BASE_BYTES + 40_000 + 100 * (256 + envelope))
    );
    assert!(!live.memory_reported);
}

#[test]
fn a_reported_figure_adds_to_the_shallow_one_until_the_hook_fails() {
    let f = Arc::new(ActorFigures::default());
    f.set_shape(MemoryShape::of::<u64, u8>());
    f.report_memory(1 << 20);
    assert_eq!(f.memory(0), Some((ACTOR_BASE_BYTES + 8 + (1 << 20), true)));
    f.hook_failed();
    assert!(f.hook_broken());
    assert_eq!(f.memory(0), Some((ACTOR_BASE_BYTES + 8, false)));
}

#[test]
fn the_hook_is_due_once_per_sampler_round() {
    let reg = StatsRegistry::new(true);
    let f = reg.figures("a");
    assert!(f.report_due(), "asked after the first message");
    assert!(!f.report_due());
    assert!(!f.report_due());
    reg.tick(|_| true);
    assert!(f.report_due());
    assert!(!f.report_due());
}

#[test]
fn totals_and_rows_sum_the_estimates() {
    let reg = StatsRegistry::new(true);
    let f = reg.figures("a");
    f.set_shape(MemoryShape::of::<[u8; 1000], u8>());
    assert_eq!(reg.rows()[0].memory, ACTOR_BASE_BYTES + 1000);
    let mut tree = TreeSnapshot::leaf("a", actors::ChildKind::Worker, actors::ChildStatus::Running);
    tree.stats = Some(f.live(0));
    let mut other =
        TreeSnapshot::leaf("b", actors::ChildKind::Worker, actors::ChildStatus::Running);
    other.stats = Some(LiveStats {
        memory_bytes: Some(5),
        ..LiveStats::default()
    });
    tree.children.push(other);
    assert_eq!(reg.totals(&tree).memory_bytes, ACTOR_BASE_BYTES + 1000 + 5);
}

#[test]
fn names_without_an_actor_are_forgotten_after_a_while_only() {
    let reg = StatsRegistry::new(true);
    reg.figures("a").record(Duration::from_micros(1));
    reg.tick(|_| false);
    assert_eq!(reg.rows().len(), 1, "forgotten at once");
    reg.tick(|_| true);
    assert_eq!(reg.rows().len(), 1);
    assert_eq!(reg.rows()[0].handled, 1);
    reg.forget("a");
    assert!(reg.rows().is_empty());
}

#[test]
fn a_figure_held_by_a_child_spec_is_kept_without_a_lookup_by_name() {
    let reg = StatsRegistry::new(true);
    let held = reg.figures("held");
    reg.figures("loose");
    let asked = std::sync::Mutex::new(Vec::new());
    let running = |name: &str| {
        asked.lock().unwrap().push(name.to_string());
        false
    };
    reg.sweep(Instant::now(), running);
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["loose".to_string()],
        "only the unheld name is looked up"
    );
    drop(held);
    reg.sweep(Instant::now(), running);
    assert_eq!(
        asked.lock().unwrap().len(),
        3,
        "once dropped, it is looked up too"
    );
    assert_eq!(reg.rows().len(), 2, "neither forgotten before FORGET_AFTER");
}

/// How many figures are on the sampler's list.
fn listed(reg: &StatsRegistry) -> usize {
    reg.listed.lock().unwrap().0.len()
}

#[test]
fn only_actors_with_messages_in_the_window_are_sampled() {
    let reg = StatsRegistry::new(true);
    let idle: Vec<_> = (0..1000)
        .map(|i| reg.figures(&format!("idle-{i}")))
        .collect();
    let busy = reg.figures("busy");
    let t0 = Instant::now();
    reg.tick_at(t0, |_| true);
    assert_eq!(listed(&reg), 0, "nothing handled yet");
    busy.record(Duration::from_micros(10));
    reg.tick_at(t0 + Duration::from_secs(1), |_| true);
    assert_eq!(listed(&reg), 1, "the busy actor alone is sampled");
    for _ in 0..50 {
        busy.record(Duration::from_micros(10));
    }
    reg.tick_at(t0 + Duration::from_secs(2), |_| true);
    assert!(
        (busy.derived().rate - 50.0).abs() < 1e-6,
        "{:?}",
        busy.derived()
    );
    // idle for a whole window: its rate falls to zero and it leaves the list
    for s in 3..(3 + WINDOW as u64 + 1) {
        reg.tick_at(t0 + Duration::from_secs(s), |_| true);
    }
    assert_eq!(busy.derived().rate, 0.0);
    assert_eq!(listed(&reg), 0, "an idle actor costs the sampler nothing");
    assert!(idle.iter().all(|f| f.derived() == Derived::default()));
    // a minute later, 30 messages in a second are 30/s, not 30 over the idle minute
    let later = t0 + Duration::from_secs(70);
    reg.tick_at(later, |_| true);
    for _ in 0..30 {
        busy.record(Duration::from_micros(10));
    }
    reg.tick_at(later + Duration::from_secs(1), |_| true);
    let d = busy.derived();
    assert!((d.rate - 30.0).abs() < 1e-6, "{d:?}");
    assert_eq!(listed(&reg), 1);
    assert_eq!(busy.handled(), 81);
}

#[test]
fn a_message_while_the_sampler_takes_a_figure_off_its_list_keeps_it_on() {
    let reg = StatsRegistry::new(true);
    let f = reg.figures("a");
    f.record(Duration::from_micros(1));
    let t0 = Instant::now();
    reg.tick_at(t0, |_| true);
    let idle = f.tick(t0 + Duration::from_secs(1), None);
    let Some(handled) = idle else {
        panic!("one sample and nothing since: idle")
    };
    // the message lands after the idle tick, before `listed` is cleared: `record` sees the
    // figure listed and does not wake it, so the sampler must keep it
    f.record(Duration::from_micros(1));
    assert!(!f.leave_list(handled), "kept on the list");
    assert!(reg.rounds.woken.lock().unwrap().is_empty());
    // with nothing new, it leaves, and the next message wakes it
    let handled = f.handled();
    assert!(f.leave_list(handled));
    f.record(Duration::from_micros(1));
    assert_eq!(reg.rounds.woken.lock().unwrap().len(), 1, "woken once");
    f.record(Duration::from_micros(1));
    assert_eq!(reg.rounds.woken.lock().unwrap().len(), 1, "and only once");
}

#[test]
fn a_name_without_an_actor_is_forgotten_after_forget_after_by_the_sweep() {
    let reg = StatsRegistry::new(true);
    drop(reg.figures("gone"));
    let kept = reg.figures("kept");
    let t0 = Instant::now();
    reg.sweep(t0, |_| false);
    reg.sweep(t0 + FORGET_AFTER - Duration::from_secs(1), |_| false);
    assert_eq!(reg.rows().len(), 2, "not before FORGET_AFTER");
    reg.sweep(t0 + FORGET_AFTER, |_| false);
    let rows = reg.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "kept");
    drop(kept);
}

#[test]
fn the_histogram_is_allocated_at_the_first_message_and_samples_it_from_then_on() {
    let f = Arc::new(ActorFigures::default());
    assert!(
        f.buckets.get().is_none(),
        "an idle figure holds no histogram"
    );
    assert!(f.sample(Instant::now()).buckets.is_empty());
    f.record(Duration::from_micros(40));
    f.record(Duration::from_micros(40));
    let at = f.sample(Instant::now());
    assert_eq!(
        at.buckets,
        vec![(bucket_of(40_000) as u16, 2)],
        "both messages in the 40 us bucket"
    );
    assert_eq!(at.handled, 2);
}
