//! Faults, named as Jepsen names them, and a seeded schedule that applies them one at a time:
//! a quiet period, a fault held for a while, its heal, again until the run's time is up, and a
//! final heal of everything (killed nodes restarted, paused ones continued, clocks reset, cuts
//! removed). Every fault and heal is a `nemesis` record in the history, value `{nodes: [...]}`.
//!
//! | name | fault |
//! |---|---|
//! | `partition-halves` | the first ⌊n/2⌋ nodes cut from the rest |
//! | `partition-random-node` | one random node cut from all others |
//! | `partition-majorities-ring` | nodes on a shuffled ring each see only their neighbours: every node a majority, no two the same (meaningful from 5 nodes) |
//! | `bridge` | two halves cut apart except one node that sees both |
//! | `kill` | SIGKILL a random node; restarted on the same data dir at the heal |
//! | `pause` | SIGSTOP the KV leader (a random node when there is none); SIGCONT at the heal |
//! | `clock` | skew a random node's wall clock by ±30..120 s (libfaketime); reset at the heal |
//! | `file-corruption` | SIGKILL a random node, truncate 1..64 bytes from the end of one of its data files, restart |
//!
//! ```
//! use chaos::nemesis::{parse_faults, Fault};
//! assert_eq!(parse_faults("kill,pause").unwrap(), vec![Fault::Kill, Fault::Pause]);
//! assert!(parse_faults("hammer").is_err());
//! ```

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{
    rngs::StdRng,
    seq::{IndexedRandom, SliceRandom},
    Rng,
};
use serde_json::json;

use crate::{
    cluster::Cluster,
    history::{History, OpType, Process},
    net::Firewall,
};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `partition-halves`.
    PartitionHalves,
    /// `partition-random-node`.
    PartitionRandomNode,
    /// `partition-majorities-ring`.
    PartitionMajoritiesRing,
    /// `bridge`.
    Bridge,
    /// `kill`.
    Kill,
    /// `pause`.
    Pause,
    /// `clock`.
    Clock,
    /// `file-corruption`.
    FileCorruption,
}

/// Every fault, in the table's order.
pub const ALL: [Fault; 8] = [
    Fault::PartitionHalves,
    Fault::PartitionRandomNode,
    Fault::PartitionMajoritiesRing,
    Fault::Bridge,
    Fault::Kill,
    Fault::Pause,
    Fault::Clock,
    Fault::FileCorruption,
];

impl Fault {
    /// Its Jepsen-style name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionRandomNode => "partition-random-node",
            Fault::PartitionMajoritiesRing => "partition-majorities-ring",
            Fault::Bridge => "bridge",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Clock => "clock",
            Fault::FileCorruption => "file-corruption",
        }
    }

    /// Whether it needs iptables.
    pub fn is_partition(self) -> bool {
        matches!(
            self,
            Fault::PartitionHalves
                | Fault::PartitionRandomNode
                | Fault::PartitionMajoritiesRing
                | Fault::Bridge
        )
    }
}

/// Parse `a,b,c` (`none` = no faults).
pub fn parse_faults(s: &str) -> Result<Vec<Fault>, String> {
    if s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|n| {
            ALL.iter()
                .copied()
                .find(|f| f.name() == n.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|f| f.name()).collect();
                    format!("unknown nemesis '{n}' (known: none, {})", names.join(", "))
                })
        })
        .collect()
}

/// The pairs of node indexes a partition fault cuts, and the nodes it names; pure, seeded.
pub fn grudge(fault: Fault, n: usize, rng: &mut impl Rng) -> (Vec<(usize, usize)>, Vec<usize>) {
    let all: Vec<usize> = (0..n).collect();
    let cut_between = |a: &[usize], b: &[usize]| -> Vec<(usize, usize)> {
        a.iter()
            .flat_map(|x| b.iter().map(move |y| (*x, *y)))
            .collect()
    };
    match fault {
        Fault::PartitionHalves => {
            let (a, b) = all.split_at(n / 2);
            (cut_between(a, b), a.to_vec())
        }
        Fault::PartitionRandomNode => {
            let x = rng.random_range(0..n);
            let rest: Vec<usize> = all.iter().copied().filter(|y| *y != x).collect();
            (cut_between(&[x], &rest), vec![x])
        }
        Fault::PartitionMajoritiesRing => {
            let mut ring = all.clone();
            ring.shuffle(rng);
            let majority = n / 2 + 1;
            let reach = (majority - 1).div_ceil(2);
            let mut pairs = Vec::new();
            for i in 0..n {
                for j in (i + 1)..n {
                    let d = (j - i).min(n - (j - i));
                    if d > reach {
                        pairs.push((ring[i], ring[j]));
                    }
                }
            }
            (pairs, ring)
        }
        Fault::Bridge => {
            let mut order = all.clone();
            order.shuffle(rng);
            let mid = n / 2;
            let (a, rest) = order.split_at(mid);
            let (bridge, b) = rest.split_at(1.min(rest.len()));
            (cut_between(a, b), bridge.to_vec())
        }
        _ => (Vec::new(), Vec::new()),
    }
}

enum Active {
    Cut,
    Killed(usize),
    Paused(usize),
    Skewed(usize),
}

/// The nemesis of one run.
#[derive(Debug)]
pub struct Nemesis {
    faults: Vec<Fault>,
    rng: StdRng,
    interval: Duration,
    /// Nodes that could not be brought back (a finding), shared with the workloads.
    pub down: Arc<Mutex<BTreeSet<usize>>>,
    /// What went wrong healing (each is reported as an anomaly).
    pub problems: Vec<String>,
    /// Faults applied.
    pub applied: usize,
}

impl Nemesis {
    /// A nemesis applying `faults` (one at a time, chosen by `rng`), each held about `interval`.
    pub fn new(faults: Vec<Fault>, rng: StdRng, interval: Duration) -> Nemesis {
        Nemesis {
            faults,
            rng,
            interval,
            down: Default::default(),
            problems: Vec::new(),
            applied: 0,
        }
    }

    fn names(c: &Cluster, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|i| c.specs[*i].name.clone()).collect()
    }

    fn live(&self, c: &Cluster) -> Vec<usize> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        (0..c.len()).filter(|i| !down.contains(i)).collect()
    }

    async fn apply(
        &mut self,
        fault: Fault,
        c: &mut Cluster,
        fw: &mut Option<Firewall>,
        h: &History,
    ) -> anyhow::Result<Active> {
        let live = self.live(c);
        let pick = |rng: &mut StdRng| live.choose(rng).copied().unwrap_or(0);
        let (active, nodes, extra) = match fault {
            f if f.is_partition() => {
                let (pairs, named) = grudge(f, c.len(), &mut self.rng);
                let fw = fw
                    .as_mut()
                    .ok_or_else(|| anyhow::anyhow!("partitions need the firewall"))?;
                h.invoke(
                    Process::nemesis(),
                    f.name(),
                    json!({"nodes": Self::names(c, &named)}),
                    None,
                );
                fw.cut(&pairs)?;
                let cut: Vec<Vec<String>> = pairs
                    .iter()
                    .map(|(a, b)| Self::names(c, &[*a, *b]))
                    .collect();
                (Active::Cut, named, json!({"cut": cut}))
            }
            Fault::Kill | Fault::FileCorruption => {
                let x = pick(&mut self.rng);
                h.invoke(
                    Process::nemesis(),
                    fault.name(),
                    json!({"nodes": Self::names(c, &[x])}),
                    None,
                );
                c.kill(x)?;
                let mut extra = json!({});
                if fault == Fault::FileCorruption {
                    let files = c.data_files(x);
                    if let Some(f) = files.choose(&mut self.rng) {
                        let len = std::fs::metadata(f)?.len();
                        let cut = self.rng.random_range(1..=64u64).min(len);
                        let file = std::fs::OpenOptions::new().write(true).open(f)?;
                        file.set_len(len - cut)?;
                        extra = json!({"file": f.display().to_string(), "truncated_bytes": cut});
                    }
                }
                (Active::Killed(x), vec![x], extra)
            }
            Fault::Pause => {
                let x = match c.kv_leader().await {
                    Some(l) if live.contains(&l) => l,
                    _ => pick(&mut self.rng),
                };
                h.invoke(
                    Process::nemesis(),
                    "pause",
                    json!({"nodes": Self::names(c, &[x])}),
                    None,
                );
                c.pause(x)?;
                (Active::Paused(x), vec![x], json!({}))
            }
            Fault::Clock => {
                let x = pick(&mut self.rng);
                let secs = self.rng.random_range(30..=120i64)
                    * if self.rng.random_bool(0.5) { 1 } else { -1 };
                h.invoke(
                    Process::nemesis(),
                    "clock",
                    json!({"nodes": Self::names(c, &[x]), "skew_secs": secs}),
                    None,
                );
                c.skew_clock(x, secs)?;
                (Active::Skewed(x), vec![x], json!({"skew_secs": secs}))
            }
            _ => unreachable!("every fault is matched above"),
        };
        let mut v = json!({"nodes": Self::names(c, &nodes)});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        h.complete(Process::nemesis(), OpType::Info, fault.name(), v, None);
        self.applied += 1;
        Ok(active)
    }

    async fn heal(
        &mut self,
        active: Active,
        c: &mut Cluster,
        fw: &mut Option<Firewall>,
        h: &History,
    ) -> anyhow::Result<()> {
        h.invoke(Process::nemesis(), "heal", json!({}), None);
        let mut err = None;
        match active {
            Active::Cut => {
                if let Some(fw) = fw.as_mut() {
                    fw.heal()?;
                }
            }
            Active::Killed(x) => {
                c.start(x)?;
                if let Err(e) = c.wait_healthy(x, Duration::from_secs(30)).await {
                    let msg = format!("{} did not come back: {e:#}", c.specs[x].name);
                    self.problems.push(msg.clone());
                    self.down
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(x);
                    err = Some(msg);
                }
            }
            Active::Paused(x) => c.resume(x)?,
            Active::Skewed(x) => c.skew_clock(x, 0)?,
        }
        h.complete(Process::nemesis(), OpType::Info, "heal", json!({}), err);
        Ok(())
    }

    /// Apply faults until `until`, then heal; bounded by the time and a cycle count.
    pub async fn run(
        &mut self,
        c: &mut Cluster,
        fw: &mut Option<Firewall>,
        h: &History,
        until: Instant,
    ) -> anyhow::Result<()> {
        if self.faults.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return Ok(());
        }
        let max_cycles = 10_000;
        for _ in 0..max_cycles {
            let quiet = self.interval.mul_f64(self.rng.random_range(0.3..0.7));
            tokio::time::sleep_until((Instant::now() + quiet).min(until).into()).await;
            if Instant::now() + Duration::from_secs(1) >= until {
                break;
            }
            let fault = *self
                .faults
                .choose(&mut self.rng)
                .ok_or_else(|| anyhow::anyhow!("no faults"))?;
            let active = self.apply(fault, c, fw, h).await?;
            let hold = self.interval.mul_f64(self.rng.random_range(0.6..1.2));
            tokio::time::sleep_until((Instant::now() + hold).min(until).into()).await;
            self.heal(active, c, fw, h).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn connected(pairs: &[(usize, usize)], a: usize, b: usize) -> bool {
        !pairs.contains(&(a, b)) && !pairs.contains(&(b, a))
    }

    #[test]
    fn halves_cut_the_first_half_from_the_rest() {
        let mut rng = StdRng::seed_from_u64(1);
        let (pairs, named) = grudge(Fault::PartitionHalves, 5, &mut rng);
        assert_eq!(named, vec![0, 1]);
        assert_eq!(pairs.len(), 6);
        assert!(connected(&pairs, 0, 1) && connected(&pairs, 2, 4));
        assert!(!connected(&pairs, 1, 2));
    }

    #[test]
    fn majorities_ring_gives_every_node_a_different_majority() {
        let mut rng = StdRng::seed_from_u64(7);
        let (pairs, _) = grudge(Fault::PartitionMajoritiesRing, 5, &mut rng);
        let mut views = BTreeSet::new();
        for a in 0..5 {
            let view: Vec<usize> = (0..5)
                .filter(|b| a == *b || connected(&pairs, a, *b))
                .collect();
            assert_eq!(view.len(), 3, "node {a} sees {view:?}");
            views.insert(view);
        }
        assert_eq!(views.len(), 5, "no two nodes see the same majority");
    }

    #[test]
    fn bridge_node_sees_both_sides() {
        let mut rng = StdRng::seed_from_u64(3);
        let (pairs, named) = grudge(Fault::Bridge, 5, &mut rng);
        let b = named[0];
        assert!((0..5).all(|x| connected(&pairs, b, x)));
        assert_eq!(pairs.len(), 4, "2 x 2 nodes cut apart");
    }

    #[test]
    fn the_schedule_is_reproducible_from_the_seed() {
        let a = grudge(
            Fault::PartitionMajoritiesRing,
            5,
            &mut StdRng::seed_from_u64(9),
        );
        let b = grudge(
            Fault::PartitionMajoritiesRing,
            5,
            &mut StdRng::seed_from_u64(9),
        );
        assert_eq!(a, b);
    }
}
