//! Where each durable channel lives: its *home* node, as this node knows it.
//!
//! Every node keeps the durable channels it has heard of on disk (`<data_dir>/broker/
//! durable.json`, a [`crate::metafile`]) and in gossip (`broker/d/<channel>` = home), so one
//! that restarts, or joins, learns them from any live node; `broker/ready` says a node has
//! published what it knows. Right after a start, "not durable" is only answered once every live
//! node's broker has been heard from ([`Homes::settle`], at most [`SETTLE_GRACE`]), so that
//! after a whole-cluster restart no node takes a durable channel for a plain one.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, RwLock,
    },
    time::Duration,
};

use runtime::{MemberState, Node};

use crate::metafile::{self, MetaError};

/// Gossip key prefix of durable channels: `broker/d/<channel>` = home node.
pub(crate) const DURABLE_PREFIX: &str = "broker/d/";
/// Gossip key a node's broker sets once it has published what it knows of durable channels.
pub(crate) const READY_KEY: &str = "broker/ready";
/// The durable channels a node knows of and their homes: `<data_dir>/broker/<this file>`.
pub(crate) const KNOWN_FILE: &str = "durable.json";
/// After a start, how long an operation on a channel not known to be durable waits at most for
/// the live nodes' brokers to be heard from (then the channel is taken as not durable).
pub(crate) const SETTLE_GRACE: Duration = Duration::from_secs(5);

/// Merge gossip claims `(publishing node, key, value)` into `known`: a home's own word first
/// (should two nodes disagree), and what is known is never forgotten (a down home stays the
/// home).
pub(crate) fn merge_claims(
    known: &mut HashMap<String, String>,
    scan: Vec<(String, String, String)>,
) {
    let mut claims: Vec<(bool, String, String)> = scan
        .into_iter()
        .filter_map(|(node, key, value)| {
            let channel = key.strip_prefix(DURABLE_PREFIX)?.to_string();
            // Older brokers published "1": the home is the publishing node.
            let home = if value.is_empty() || value == "1" {
                node.clone()
            } else {
                value
            };
            Some((home != node, channel, home))
        })
        .collect();
    claims.sort_by_key(|(hearsay, _, _)| *hearsay);
    for (_, channel, home) in claims {
        known.entry(channel).or_insert(home);
    }
}

/// This node's knowledge of durable channels' homes.
pub(crate) struct Homes {
    node: Node,
    file: PathBuf,
    map: RwLock<HashMap<String, String>>,
    /// The map as last written to [`KNOWN_FILE`].
    saved: Mutex<HashMap<String, String>>,
    /// Channels this node has published in gossip.
    published: tokio::sync::Mutex<HashSet<String>>,
    started: tokio::time::Instant,
    settled: AtomicBool,
}

impl Homes {
    /// Load what this node knew when it stopped; a damaged file is an error.
    pub fn load(node: &Node, dir: PathBuf) -> Result<Homes, MetaError> {
        let file = dir.join(KNOWN_FILE);
        let known: HashMap<String, String> = metafile::read(
            &file,
            "move it away: the node then relearns the durable channels' homes from the other \
             nodes (until it has, a durable channel homed on a node that is down is unknown here)",
        )?
        .unwrap_or_default();
        Ok(Homes {
            node: node.clone(),
            file,
            map: RwLock::new(known.clone()),
            saved: Mutex::new(known),
            published: tokio::sync::Mutex::new(HashSet::new()),
            started: tokio::time::Instant::now(),
            settled: AtomicBool::new(false),
        })
    }

    /// The home of a durable channel (`None`: not durable, as far as this node knows yet).
    pub fn get(&self, channel: &str) -> Option<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
    }

    /// Every durable channel and its home.
    pub fn all(&self) -> HashMap<String, String> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record homes (this node's own channels), keep them on disk and publish them.
    pub async fn insert(&self, homes: impl IntoIterator<Item = (String, String)>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(homes);
        self.save();
        self.publish().await;
    }

    /// Merge what live nodes publish, keep it on disk, publish what this node knows in turn.
    pub async fn refresh(&self) {
        let scan = self.node.gossip_scan(DURABLE_PREFIX).await;
        {
            let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
            merge_claims(&mut map, scan);
        }
        self.save();
        self.publish().await;
    }

    /// Write the map to [`KNOWN_FILE`] when it changed.
    fn save(&self) {
        let now = self.all();
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if *saved == now {
            return;
        }
        match metafile::write(&self.file, &now) {
            Ok(()) => *saved = now,
            Err(e) => tracing::warn!("broker: cannot save known durable channels: {e}"),
        }
    }

    /// Publish (`broker/d/<channel>` = home) what this node knows and has not published yet.
    pub async fn publish(&self) {
        let mut published = self.published.lock().await;
        for (channel, home) in self.all() {
            if !published.contains(&channel) {
                // (a channel name and a node name always fit in a gossip entry)
                match self
                    .node
                    .gossip_set(&format!("{DURABLE_PREFIX}{channel}"), &home)
                    .await
                {
                    Ok(()) => {
                        published.insert(channel);
                    }
                    Err(e) => tracing::error!("broker: cannot publish the home of {channel}: {e}"),
                }
            }
        }
    }

    /// The home of `channel` if it is durable, once this node can tell (see [`Homes::settle`]).
    pub async fn get_settled(&self, channel: &str) -> Option<String> {
        if let Some(home) = self.get(channel) {
            return Some(home);
        }
        self.settle().await;
        self.get(channel)
    }

    /// Right after a start, wait (at most [`SETTLE_GRACE`]) until the broker of every live node
    /// has been heard from, so that "not durable" means that no live node knows the channel
    /// as durable, not that gossip has not arrived yet.
    pub async fn settle(&self) {
        if self.settled.load(Ordering::Acquire) {
            return;
        }
        let deadline = self.started + SETTLE_GRACE;
        loop {
            if self.heard_everyone().await || tokio::time::Instant::now() >= deadline {
                self.refresh().await;
                self.settled.store(true, Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether every other live node's broker has published its durable channels (its
    /// [`READY_KEY`], set after them, has arrived).
    async fn heard_everyone(&self) -> bool {
        let others: Vec<String> = self
            .node
            .members()
            .await
            .into_iter()
            .filter(|m| !m.is_self && m.state == MemberState::Alive)
            .map(|m| m.name)
            .collect();
        if others.is_empty() {
            // Alone: settled unless seeds say that other nodes should show up.
            return self.node.config().seeds.is_empty();
        }
        let ready: HashSet<String> = self
            .node
            .gossip_scan(READY_KEY)
            .await
            .into_iter()
            .filter(|(_, k, _)| k == READY_KEY)
            .map(|(n, _, _)| n)
            .collect();
        others.iter().all(|n| ready.contains(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: &str, channel: &str, home: &str) -> (String, String, String) {
        (
            node.into(),
            format!("{DURABLE_PREFIX}{channel}"),
            home.into(),
        )
    }

    #[test]
    fn a_homes_own_word_wins_over_hearsay_and_nothing_is_forgotten() {
        let mut known = HashMap::from([("old".to_string(), "n9".to_string())]);
        merge_claims(
            &mut known,
            vec![
                claim("n2", "ledger", "n3"), // hearsay
                claim("n1", "ledger", "n1"), // the home itself
                claim("n2", "legacy", "1"),  // an older broker's value
                ("n2".into(), "broker/i/x".into(), "{}".into()),
            ],
        );
        assert_eq!(known["ledger"], "n1");
        assert_eq!(known["legacy"], "n2");
        assert_eq!(known["old"], "n9");
        assert_eq!(known.len(), 3);
    }
}
