//! Live figures of named actors, cheap enough to leave on: messages handled, handling time in a
//! log-bucketed histogram (atomics only, no lock on the message path), uptime and the last
//! failures, kept per actor *name* (so they survive restarts). A sampler (the node's supervised
//! child `actor-stats-sampler`) takes a snapshot of the counters of every actor that handled a
//! message in the last [`WINDOW`] seconds, once a second, and derives rate, mean and p99 over
//! the last [`WINDOW`] samples; mailbox lengths come from ractor's cells (vendored with a
//! counter, see `vendor/ractor/PATCHED.md`) when a tree snapshot is taken.
//!
//! Idle actors cost the sampler nothing: an actor whose window has been idle throughout leaves
//! the sampler's list, and its next message puts it back (a flag on the message path, a push
//! once per round). Only the sweep that forgets names without an actor visits every figure, every
//! [`SWEEP_EVERY`] rounds, without taking a lock on a figure that an actor still holds.
//!
//! The timing can be switched off at run time ([`StatsRegistry::set_enabled`]); the message
//! count stays (it feeds `draft_messages_handled_total`).
//!
//! Each actor also has a memory estimate (not switched off with the timing: it costs nothing per
//! message): a shallow one from the types its wrapper knows ([`ACTOR_BASE_BYTES`] + the size of
//! its state + the queued messages at [`MemoryShape::per_message`] each), plus what the actor
//! itself reports about its state's heap through an optional hook (see
//! [`crate::Factory::with_memory`]), asked at most once per sampler round.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock, RwLock, Weak,
    },
    time::{Duration, Instant},
};

use actors::{LiveStats, TreeSnapshot};

mod histogram;
#[cfg(test)]
mod tests;

use histogram::{bucket_of, quantile, BUCKETS};

/// How many one-second samples the rate and times are computed over.
pub(crate) const WINDOW: usize = 10;
/// How often the sampler runs.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Failures kept per actor.
const FAILURES_KEPT: usize = 5;
/// Figures of a name with no running actor are forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Every how many sampler rounds the figures of names without an actor are looked for.
const SWEEP_EVERY: u64 = 10;

/// What one named actor costs the runtime besides its state and its queued messages: the
/// ractor cell and its four mailbox channels, the task and its future (a minimal actor's), the
/// name and pid registry entries (about 5.7 KiB, what a bare named ractor actor costs), then
/// the supervisor's child record, the wrapper, and its live figures (about 2.1 KiB together
/// for an idle actor; the figures' histogram, 1.3 KiB more, is allocated at the first message
/// handled). Measured, not derived: the heap growth per idle actor spawned through
/// `Node::spawn`, once the sampler's window is full (7.7 KiB; 9.1 KiB with the histogram):
/// `runtime/tests/actor_memory_cost.rs`
/// (`cargo test --release -p runtime --test actor_memory_cost -- --ignored --nocapture`).
pub const ACTOR_BASE_BYTES: u64 = 8 * 1024;

/// The types' part of an actor's shallow memory estimate, known to its wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryShape {
    /// `size_of` of the actor's state.
    pub(crate) state: u64,
    /// What one queued message costs: `size_of` of the message (boxed by ractor) and of
    /// ractor's envelope (`BoxedMessage`, in the channel's slot).
    pub(crate) per_message: u64,
}

impl MemoryShape {
    /// The shape of an actor's types.
    pub(crate) fn of<State, Msg>() -> Self {
        let size = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        MemoryShape {
            state: size(std::mem::size_of::<State>()),
            per_message: size(std::mem::size_of::<Msg>())
                + size(std::mem::size_of::<ractor::message::BoxedMessage>()),
        }
    }
}

/// `reported` when the actor has not reported anything (no hook, or not asked yet).
const NOT_REPORTED: u64 = u64::MAX;

/// One actor's counters (one per name; the actor's wrapper holds it).
///
/// `repr(C)` with the fields the sweep and the message path read first, next to the `Arc`'s
/// counts: with a million figures the sweep touches one cache line of each.
#[repr(C)]
pub(crate) struct ActorFigures {
    /// Milliseconds after the registry's epoch when the name was first seen without an actor
    /// (for forgetting it), or [`PRESENT`].
    absent_since: AtomicU64,
    handled: AtomicU64,
    /// Whether the figure is on the sampler's list (or waiting to be put on it).
    listed: AtomicBool,
    busy_ns: AtomicU64,
    /// The round in which the memory hook was last asked.
    asked_round: AtomicU64,
    rounds: Arc<Rounds>,
    /// The histogram of handling times, allocated at the first message: an actor that never
    /// handled one (most of a large idle population) does not pay its 1.3 KB.
    buckets: OnceLock<Box<Histogram>>,
    /// When the actor last started (its wrapper's `pre_start`).
    started: Mutex<Option<Instant>>,
    failures: Mutex<VecDeque<String>>,
    /// The shallow estimate's parts, set when the actor starts (`None` before).
    shape: Mutex<Option<MemoryShape>>,
    /// Heap bytes the actor's memory hook last reported, or [`NOT_REPORTED`].
    reported: AtomicU64,
    /// The memory hook panicked once: it is not asked again.
    hook_broken: AtomicBool,
    /// The sampler's view: cumulative samples, newest last, and what was derived from them.
    window: Mutex<Window>,
}

/// One counter per bucket of handling time (see `histogram::bucket_of`).
type Histogram = [AtomicU64; BUCKETS];

/// `absent_since` of a name whose actor is there.
const PRESENT: u64 = 0;

/// What the figures of one registry share with its sampler.
pub(crate) struct Rounds {
    /// The sampler rounds so far (a memory hook is asked at most once per round).
    number: AtomicU64,
    /// Figures that handled a message while off the sampler's list; the next round takes them.
    woken: Mutex<Vec<Arc<ActorFigures>>>,
    /// What `absent_since` counts from.
    epoch: Instant,
}

impl Rounds {
    fn new() -> Arc<Self> {
        Arc::new(Rounds {
            number: AtomicU64::new(0),
            woken: Mutex::new(Vec::new()),
            epoch: Instant::now(),
        })
    }

    /// `at` as one more than the milliseconds after the epoch, so never [`PRESENT`].
    fn millis(&self, at: Instant) -> u64 {
        let ms = u64::try_from(at.saturating_duration_since(self.epoch).as_millis());
        ms.unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

#[derive(Default)]
struct Window {
    samples: VecDeque<Sample>,
    derived: Derived,
}

#[derive(Clone)]
struct Sample {
    at: Instant,
    handled: u64,
    busy_ns: u64,
    /// The histogram's non-empty buckets, `(bucket, count)` in bucket order: an idle actor's
    /// samples hold nothing on the heap, a busy one's only the few buckets its times fall in.
    buckets: Vec<(u16, u64)>,
}

impl Sample {
    /// The histogram as one count per bucket.
    fn dense(&self) -> [u64; BUCKETS] {
        let mut counts = [0; BUCKETS];
        for &(b, c) in &self.buckets {
            counts[usize::from(b)] = c;
        }
        counts
    }
}

/// Rate and times derived from two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Derived {
    pub(crate) rate: f64,
    pub(crate) mean_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) window_s: f64,
}

impl Default for ActorFigures {
    /// Figures with a sampler of their own (tests).
    fn default() -> Self {
        ActorFigures::new(Rounds::new())
    }
}

impl ActorFigures {
    fn new(rounds: Arc<Rounds>) -> Self {
        ActorFigures {
            absent_since: AtomicU64::new(PRESENT),
            handled: AtomicU64::new(0),
            listed: AtomicBool::new(false),
            busy_ns: AtomicU64::new(0),
            asked_round: AtomicU64::new(u64::MAX),
            rounds,
            buckets: OnceLock::new(),
            started: Mutex::new(None),
            failures: Mutex::new(VecDeque::new()),
            shape: Mutex::new(None),
            reported: AtomicU64::new(NOT_REPORTED),
            hook_broken: AtomicBool::new(false),
            window: Mutex::new(Window::default()),
        }
    }
}

/// What changed between two cumulative samples.
fn derive(old: &Sample, new: &Sample) -> Derived {
    let secs = new.at.duration_since(old.at).as_secs_f64();
    let n = new.handled.saturating_sub(old.handled);
    let busy = new.busy_ns.saturating_sub(old.busy_ns);
    let mut diff = new.dense();
    for &(b, c) in &old.buckets {
        let d = &mut diff[usize::from(b)];
        *d = d.saturating_sub(c);
    }
    Derived {
        rate: if secs > 0.0 { n as f64 / secs } else { 0.0 },
        mean_us: if n > 0 {
            busy as f64 / n as f64 / 1000.0
        } else {
            0.0
        },
        p99_us: quantile(&diff, 0.99) as f64 / 1000.0,
        window_s: secs,
    }
}

impl ActorFigures {
    /// One message handled in `took`; an actor off the sampler's list goes back on it.
    pub(crate) fn record(self: &Arc<Self>, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // SeqCst on `handled` and `listed` (free on x86 for these): the sampler, taking a
        // figure off its list, clears `listed` and then reads `handled`; this side adds to
        // `handled` and then reads `listed`. One of the two sees the other, so a message is
        // never left unsampled.
        self.handled.fetch_add(1, Ordering::SeqCst);
        // One writer (the actor of this name handles one message at a time, and a restarted
        // one only after its predecessor stopped): a load and a store each, no locked
        // read-modify-write on the message path. Readers see whole values.
        let add = |a: &AtomicU64, n: u64| {
            a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed)
        };
        add(&self.busy_ns, ns);
        let buckets = self
            .buckets
            .get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        add(&buckets[bucket_of(ns)], 1);
        if !self.listed.load(Ordering::SeqCst) && !self.listed.swap(true, Ordering::SeqCst) {
            self.rounds
                .woken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::clone(self));
        }
    }

    /// The actor (re)started.
    pub(crate) fn started(&self) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// A handler failed (an error returned, or a panic).
    pub(crate) fn failed(&self, reason: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() == FAILURES_KEPT {
            f.pop_front();
        }
        f.push_back(reason);
    }

    /// The actor started with these types.
    pub(crate) fn set_shape(&self, shape: MemoryShape) {
        *self.shape.lock().unwrap_or_else(|p| p.into_inner()) = Some(shape);
    }

    /// Whether the memory hook should be asked again (at most once per sampler round); two
    /// relaxed loads on the message path, a swap only once a round.
    pub(crate) fn report_due(&self) -> bool {
        let round = self.rounds.number.load(Ordering::Relaxed);
        self.asked_round.load(Ordering::Relaxed) != round
            && self.asked_round.swap(round, Ordering::Relaxed) != round
    }

    /// The memory hook panicked: forget what it said and do not ask it again.
    pub(crate) fn hook_failed(&self) {
        self.hook_broken.store(true, Ordering::Relaxed);
        self.reported.store(NOT_REPORTED, Ordering::Relaxed);
    }

    pub(crate) fn hook_broken(&self) -> bool {
        self.hook_broken.load(Ordering::Relaxed)
    }

    /// The actor's memory hook said its state holds `bytes` on the heap.
    pub(crate) fn report_memory(&self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(NOT_REPORTED - 1);
        self.reported
            .store(bytes.min(NOT_REPORTED - 1), Ordering::Relaxed);
    }

    /// The memory estimate with `mailbox` messages queued: bytes and whether the actor
    /// reported part of it; `None` before the actor first started.
    pub(crate) fn memory(&self, mailbox: u64) -> Option<(u64, bool)> {
        let shape = (*self.shape.lock().unwrap_or_else(|p| p.into_inner()))?;
        let reported = self.reported.load(Ordering::Relaxed);
        let heap = if reported == NOT_REPORTED {
            0
        } else {
            reported
        };
        let bytes = ACTOR_BASE_BYTES
            .saturating_add(shape.state)
            .saturating_add(shape.per_message.saturating_mul(mailbox))
            .saturating_add(heap);
        Some((bytes, reported != NOT_REPORTED))
    }

    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    fn sample(&self, at: Instant) -> Sample {
        Sample {
            at,
            handled: self.handled.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            buckets: self.buckets.get().map_or_else(Vec::new, |h| {
                h.iter()
                    .enumerate()
                    .filter_map(|(b, c)| {
                        let c = c.load(Ordering::Relaxed);
                        (c > 0).then_some((b as u16, c))
                    })
                    .collect()
            }),
        }
    }

    /// Take a sample and derive the window's figures from it and the oldest one kept. `woken`
    /// is the time of the previous round when the figure comes back on the sampler's list: its
    /// one idle sample was last moved before it left, and moves to then, so its first rate is
    /// over the last round. Returns whether the whole window is idle (and `handled` then).
    fn tick(&self, at: Instant, woken: Option<Instant>) -> Option<u64> {
        let handled = self.handled.load(Ordering::SeqCst);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(prev), 1) = (woken, w.samples.len()) {
            if let Some(s) = w.samples.back_mut() {
                s.at = prev.min(at);
            }
        }
        // Idle over the whole window (the common case with many actors): its figures are the
        // zeros already derived; keep one sample, moved to now, so the rate after the next
        // message is taken over the last second, not over the idle time. No 160-bucket read.
        let idle = |s: Option<&Sample>| s.is_some_and(|s| s.handled == handled);
        if idle(w.samples.front()) && idle(w.samples.back()) {
            // What the window says now: nothing handled over it.
            if let (Some(old), Some(new)) = (w.samples.front(), w.samples.back()) {
                if w.samples.len() > 1 {
                    w.derived = derive(old, new);
                }
            }
            while w.samples.len() > 1 {
                w.samples.pop_front();
            }
            if let Some(s) = w.samples.back_mut() {
                s.at = at;
            }
            return Some(handled);
        }
        let sample = self.sample(at);
        if w.samples.len() > WINDOW {
            w.samples.pop_front();
        }
        if let Some(oldest) = w.samples.front() {
            w.derived = derive(oldest, &sample);
        }
        w.samples.push_back(sample);
        None
    }

    /// Take the figure off the sampler's list after an idle [`ActorFigures::tick`] that saw
    /// `handled`; false when a message came in meanwhile and it stays on.
    fn leave_list(&self, handled: u64) -> bool {
        self.listed.store(false, Ordering::SeqCst);
        // A message after the tick whose `record` saw `listed` still set: stay on the list
        // (unless that `record` saw it clear and woke the figure itself).
        self.handled.load(Ordering::SeqCst) == handled || self.listed.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn derived(&self) -> Derived {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .derived
    }

    fn live(&self, mailbox: u64) -> LiveStats {
        let d = self.derived();
        let uptime_s = self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let memory = self.memory(mailbox);
        LiveStats {
            mailbox,
            memory_bytes: memory.map(|(b, _)| b),
            memory_reported: memory.is_some_and(|(_, r)| r),
            handled: self.handled(),
            rate: d.rate,
            mean_us: d.mean_us,
            p99_us: d.p99_us,
            uptime_s,
            window_s: d.window_s,
            timed: true,
            failures: self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// Per-node totals of the live figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeTotals {
    /// Actors with figures (named actors the runtime spawned).
    pub actors: u64,
    /// Messages waiting in all mailboxes of the tree.
    pub mailbox: u64,
    /// Messages handled by timed actors, in total.
    pub handled: u64,
    /// Messages handled per second by timed actors, over the window.
    pub rate: f64,
    /// The memory estimates of the actors with one, summed (see [`LiveStats::memory_bytes`]).
    #[serde(default)]
    pub memory_bytes: u64,
    /// The process's resident memory in bytes, where the OS says (Linux `/proc/self/statm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Whether handler timing is on.
    pub timing: bool,
}

/// The figures of one node's actors, by name.
pub(crate) struct StatsRegistry {
    enabled: AtomicBool,
    by_name: RwLock<HashMap<String, Arc<ActorFigures>>>,
    rounds: Arc<Rounds>,
    /// The sampler's list: figures with a message in their window, and the last round's time.
    listed: Mutex<(Vec<Arc<ActorFigures>>, Option<Instant>)>,
}

impl StatsRegistry {
    pub(crate) fn new(enabled: bool) -> Arc<Self> {
        Arc::new(StatsRegistry {
            enabled: AtomicBool::new(enabled),
            by_name: RwLock::new(HashMap::new()),
            rounds: Rounds::new(),
            listed: Mutex::new((Vec::new(), None)),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// The figures of `name`, created on first use.
    pub(crate) fn figures(&self, name: &str) -> Arc<ActorFigures> {
        if let Some(f) = self
            .by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return f.clone();
        }
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(ActorFigures::new(self.rounds.clone())))
            .clone()
    }

    /// Forget a name's figures (its actor was stopped and deleted).
    pub(crate) fn forget(&self, name: &str) {
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    fn all(&self) -> Vec<(String, Arc<ActorFigures>)> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One sampler round: sample the actors on the list, every [`SWEEP_EVERY`] rounds (the
    /// first included) forget names absent for a while.
    pub(crate) fn tick(&self, running: impl Fn(&str) -> bool) {
        self.tick_at(Instant::now(), running);
    }

    fn tick_at(&self, now: Instant, running: impl Fn(&str) -> bool) {
        let round = self.rounds.number.fetch_add(1, Ordering::Relaxed);
        let woken =
            std::mem::take(&mut *self.rounds.woken.lock().unwrap_or_else(|p| p.into_inner()));
        let mut guard = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let (list, last_round) = &mut *guard;
        let previous = last_round.replace(now);
        let on = std::mem::take(list).into_iter().map(|f| (f, None));
        let back = woken.into_iter().map(|f| (f, previous));
        let mut kept = Vec::new();
        for (f, woken) in on.chain(back) {
            match f.tick(now, woken) {
                Some(handled) if f.leave_list(handled) => {}
                _ => kept.push(f),
            }
        }
        *list = kept;
        drop(guard);
        if round.is_multiple_of(SWEEP_EVERY) {
            self.sweep(now, running);
        }
    }

    /// Forget the figures of names without an actor for [`FORGET_AFTER`]. A figure that an
    /// actor's child spec still holds (running, or being restarted) needs no lookup by name:
    /// `running` hashes the name in ractor's registry, which with 100 000 idle actors was most
    /// of an idle node's CPU.
    fn sweep(&self, now: Instant, running: impl Fn(&str) -> bool) {
        let now_ms = self.rounds.millis(now);
        let forget_ms = u64::try_from(FORGET_AFTER.as_millis()).unwrap_or(u64::MAX);
        let mut gone = Vec::new();
        // Under the read lock, without copying 100 000 names (spawns wait for it).
        let map = self.by_name.read().unwrap_or_else(|p| p.into_inner());
        for (name, f) in map.iter() {
            if Arc::strong_count(f) > 1 || running(name) {
                if f.absent_since.load(Ordering::Relaxed) != PRESENT {
                    f.absent_since.store(PRESENT, Ordering::Relaxed);
                }
                continue;
            }
            let since = match f.absent_since.load(Ordering::Relaxed) {
                PRESENT => {
                    f.absent_since.store(now_ms, Ordering::Relaxed);
                    now_ms
                }
                since => since,
            };
            if now_ms.saturating_sub(since) >= forget_ms {
                gone.push(name.clone());
            }
        }
        drop(map);
        if !gone.is_empty() {
            let mut map = self.by_name.write().unwrap_or_else(|p| p.into_inner());
            for name in gone {
                map.remove(&name);
            }
        }
    }

    /// Fill in `stats` on every tree node whose actor is alive here: the mailbox length of
    /// every actor, and the timed figures of named ones.
    pub(crate) fn annotate(&self, tree: &mut TreeSnapshot) {
        let cells: HashMap<String, ractor::ActorCell> =
            ractor::registry::pid_registry::get_all_pids()
                .into_iter()
                .map(|c| (c.get_id().to_string(), c))
                .collect();
        tree.visit_mut(&mut |t| {
            let Some(cell) = t.actor_id.as_ref().and_then(|id| cells.get(id)) else {
                return;
            };
            let mailbox = cell.mailbox_len() as u64;
            let figures = t.actor_name.as_ref().and_then(|n| {
                self.by_name
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(n)
                    .cloned()
            });
            t.stats = Some(match figures {
                Some(f) => f.live(mailbox),
                None => LiveStats {
                    mailbox,
                    ..LiveStats::default()
                },
            });
        });
    }

    /// Totals over a tree annotated by [`StatsRegistry::annotate`].
    pub(crate) fn totals(&self, tree: &TreeSnapshot) -> NodeTotals {
        let mut t = NodeTotals {
            rss_bytes: rss_bytes(),
            timing: self.enabled(),
            ..NodeTotals::default()
        };
        let mut visit = |n: &TreeSnapshot| {
            if let Some(s) = &n.stats {
                t.mailbox += s.mailbox;
                t.memory_bytes += s.memory_bytes.unwrap_or(0);
                if s.timed {
                    t.actors += 1;
                    t.handled += s.handled;
                    t.rate += s.rate;
                }
            }
        };
        walk(tree, &mut visit);
        t
    }

    /// `(name, mailbox, handled, derived)` of every actor with figures, for metrics.
    pub(crate) fn rows(&self) -> Vec<MetricRow> {
        self.all()
            .into_iter()
            .map(|(name, f)| {
                let mailbox = ractor::registry::where_is(name.as_str())
                    .map(|c| c.mailbox_len() as u64)
                    .unwrap_or(0);
                MetricRow {
                    memory: f.memory(mailbox).map(|(b, _)| b).unwrap_or(0),
                    handled: f.handled(),
                    failures: f.failures.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
                    derived: f.derived(),
                    mailbox,
                    name,
                }
            })
            .collect()
    }
}

/// One actor's figures for the metrics exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricRow {
    pub(crate) name: String,
    pub(crate) mailbox: u64,
    pub(crate) handled: u64,
    pub(crate) failures: u64,
    /// The memory estimate in bytes (0 when there is none yet).
    pub(crate) memory: u64,
    pub(crate) derived: Derived,
}

fn walk(t: &TreeSnapshot, f: &mut impl FnMut(&TreeSnapshot)) {
    f(t);
    for c in &t.children {
        walk(c, f);
    }
}

/// The process's resident set in bytes (Linux), else `None`.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| p * pages)
}

/// The sampler: a tick every [`SAMPLE_EVERY`] until the registry is dropped. Runs as the
/// node's supervised child `actor-stats-sampler` (a restart keeps the windows: they live in the
/// registry).
pub(crate) async fn run_sampler(registry: Weak<StatsRegistry>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(reg) = registry.upgrade() else {
            return;
        };
        reg.tick(|name| ractor::registry::where_is(name).is_some());
    }
}
