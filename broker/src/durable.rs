//! Durable channels: the logs homed on this node, and appends, reads and group offsets for
//! any durable channel (here, or at its home through [`crate::remote`]).
//!
//! The channels declared on this node are listed in `<data_dir>/broker/channels.json` (a
//! [`crate::metafile`]; the `*.log` files beside it count too, so no log is forgotten). A log
//! that cannot be opened (a damaged record, a damaged groups file) is not served: operations on
//! its channel fail with the reason, naming the file and how to recover, while the rest of the
//! node runs.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use runtime::Node;

use crate::{
    error::BrokerError,
    fanout::Fanout,
    homes::Homes,
    interest::{Interest, Stamp},
    log::Log,
    metafile,
    metrics::add,
    names::valid_channel,
    protocol::{NodeInterest, Request, Response},
    remote,
    subscription::Item,
};

/// The channels declared on this node: `<data_dir>/broker/<this file>`.
pub(crate) const DECLARED_FILE: &str = "channels.json";
/// Records per replay read.
pub(crate) const READ_MAX: u64 = 4096;

type SharedLog = Arc<tokio::sync::Mutex<Log>>;

/// Durable channels as seen from this node.
pub(crate) struct Durable {
    node: Node,
    me: String,
    dir: PathBuf,
    pub homes: Homes,
    fanout: Arc<Fanout>,
    logs: Mutex<HashMap<String, SharedLog>>,
    /// Channels homed here whose log cannot be served, and why.
    refused: Mutex<HashMap<String, String>>,
}

fn log_error(channel: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Log {
        channel: channel.to_string(),
        reason: e.to_string(),
    }
}

impl Durable {
    /// Open the logs declared here; a damaged `channels.json` or `durable.json` is an error
    /// (the node does not start), a damaged log refuses only its channel.
    pub async fn open(node: &Node, fanout: Arc<Fanout>) -> Result<Durable, BrokerError> {
        let dir = node.config().data_dir.join("broker");
        let homes = Homes::load(node, dir.clone()).map_err(BrokerError::Corrupt)?;
        let durable = Durable {
            node: node.clone(),
            me: node.name().to_string(),
            dir,
            homes,
            fanout,
            logs: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        };
        let declared = durable.declared()?;
        for channel in &declared {
            match Log::open(&durable.dir, channel) {
                Ok(log) => {
                    durable
                        .lock_logs()
                        .insert(channel.clone(), Arc::new(tokio::sync::Mutex::new(log)));
                }
                Err(e) => {
                    tracing::error!("broker: not serving durable channel '{channel}': {e}");
                    durable
                        .lock_refused()
                        .insert(channel.clone(), e.to_string());
                }
            }
        }
        let me = durable.me.clone();
        durable
            .homes
            .insert(declared.into_iter().map(|c| (c, me.clone())))
            .await;
        Ok(durable)
    }

    fn lock_logs(&self) -> std::sync::MutexGuard<'_, HashMap<String, SharedLog>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_refused(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channels declared here: the list on disk and every `*.log` beside it.
    fn declared(&self) -> Result<Vec<String>, BrokerError> {
        let file = self.dir.join(DECLARED_FILE);
        let list: Vec<String> = metafile::read(
            &file,
            "move it away: the node then rebuilds the list from the *.log files beside it",
        )
        .map_err(BrokerError::Corrupt)?
        .unwrap_or_default();
        let files: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(merge_declared(list, &files))
    }

    /// Make `channel` durable with its log here. Returns the home (this node).
    pub async fn declare(&self, channel: &str) -> Result<String, BrokerError> {
        let mut declared = self.declared()?;
        if !declared.iter().any(|c| c == channel) {
            declared.push(channel.to_string());
            metafile::write(&self.dir.join(DECLARED_FILE), &declared)
                .map_err(|e| log_error(channel, e))?;
        }
        if !self.lock_logs().contains_key(channel) {
            let log = Log::open(&self.dir, channel).map_err(|e| log_error(channel, e))?;
            self.lock_logs()
                .insert(channel.to_string(), Arc::new(tokio::sync::Mutex::new(log)));
        }
        self.homes
            .insert([(channel.to_string(), self.me.clone())])
            .await;
        Ok(self.me.clone())
    }

    /// A log homed here, or why it is not served.
    fn local(&self, channel: &str) -> Result<SharedLog, BrokerError> {
        if let Some(reason) = self.lock_refused().get(channel) {
            return Err(log_error(channel, reason));
        }
        self.lock_logs()
            .get(channel)
            .cloned()
            .ok_or_else(|| log_error(channel, "not a durable channel of this node"))
    }

    /// Append to a log homed here, then fan out in offset order.
    pub async fn append_local(
        &self,
        channel: &str,
        events: Vec<Arc<str>>,
    ) -> Result<u64, BrokerError> {
        let log = self.local(channel)?;
        let mut log = log.lock().await;
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let first = log.append(&payloads).map_err(|e| log_error(channel, e))?;
        // Fan out while holding the log so live order equals offset order.
        let items = numbered(events, first);
        add(&self.fanout.metrics.produced, items.len() as u64);
        self.fanout.fan_out(channel, items).await;
        Ok(first)
    }

    /// Append to a durable channel homed at `home`; returns the first offset.
    pub async fn append(
        &self,
        channel: &str,
        home: &str,
        events: Vec<Arc<str>>,
    ) -> Result<u64, BrokerError> {
        if home == self.me {
            return self.append_local(channel, events).await;
        }
        let req = Request::Append {
            channel: channel.to_string(),
            events: events.iter().map(|e| e.to_string()).collect(),
        };
        match remote::ask(&self.node, channel, home, req).await? {
            Response::Appended(first) => Ok(first),
            other => Err(remote::unexpected(channel, "append", other)),
        }
    }

    /// Read a durable log (here or at its home).
    pub async fn read(
        &self,
        channel: &str,
        from: u64,
        max: u64,
    ) -> Result<Vec<(u64, String)>, BrokerError> {
        let home = self.homes.get(channel).ok_or_else(|| {
            BrokerError::BadRequest(format!("channel '{channel}' is not durable"))
        })?;
        let max = read_max(max);
        if home == self.me {
            let log = self.local(channel)?;
            let log = log.lock().await;
            return log
                .read(from, max as usize)
                .map_err(|e| log_error(channel, e));
        }
        let req = Request::Read {
            channel: channel.to_string(),
            from,
            max,
        };
        match remote::ask(&self.node, channel, &home, req).await? {
            Response::Records(r) => Ok(r),
            other => Err(remote::unexpected(channel, "read", other)),
        }
    }

    /// Make sure the channel's home routes its events to this node, whose interest in it is now
    /// `interest` (a subscription was just added), before that subscription is answered; returns
    /// the log's head at that moment. Every event from the head on reaches this node's
    /// subscribers live, every event before it is in the log (see [`crate::hints`]).
    pub async fn attach(
        &self,
        channel: &str,
        interest: Interest,
        stamp: Stamp,
    ) -> Result<u64, BrokerError> {
        let home = self.homes.get(channel).ok_or_else(|| {
            BrokerError::BadRequest(format!("channel '{channel}' is not durable"))
        })?;
        if home == self.me {
            // The subscription is in the table already: an append after this lock sees it.
            let log = self.local(channel)?;
            let head = log.lock().await.len();
            return Ok(head);
        }
        let req = Request::Attach(self.pushed(channel, interest, stamp));
        match remote::ask(&self.node, channel, &home, req).await? {
            Response::Attached { head } => Ok(head),
            other => Err(remote::unexpected(channel, "attach", other)),
        }
    }

    /// [`Durable::attach`] at the home: record the node's interest under the log's lock, so
    /// that every append after the answer routes to it; answer the head.
    pub async fn attach_here(&self, pushed: NodeInterest) -> Result<u64, BrokerError> {
        let log = self.local(&pushed.channel)?;
        let log = log.lock().await;
        self.hint(pushed);
        Ok(log.len())
    }

    /// This node's interest in a durable channel changed (a subscription went away): tell the
    /// home, which may hold what an earlier [`Durable::attach`] said (best effort; gossip says
    /// it too).
    pub fn detach(&self, channel: &str, interest: Interest, stamp: Stamp) {
        match self.homes.get(channel) {
            Some(home) if home != self.me => {
                let req = Request::Interest(self.pushed(channel, interest, stamp));
                remote::tell(&self.node, &home, req);
            }
            _ => {}
        }
    }

    /// A node's changed interest in a channel homed here.
    pub fn interest_here(&self, pushed: NodeInterest) {
        if self.local(&pushed.channel).is_ok() {
            self.hint(pushed);
        }
    }

    fn hint(&self, p: NodeInterest) {
        let stamp = Stamp {
            inc: p.incarnation,
            seq: p.seq,
        };
        self.fanout
            .remote
            .hint(&p.channel, &p.node, p.interest, stamp);
    }

    fn pushed(&self, channel: &str, interest: Interest, stamp: Stamp) -> NodeInterest {
        NodeInterest {
            channel: channel.to_string(),
            node: self.me.clone(),
            interest,
            incarnation: stamp.inc,
            seq: stamp.seq,
        }
    }

    /// A group's committed next offset on a durable channel.
    pub async fn committed(&self, channel: &str, group: &str) -> Result<Option<u64>, BrokerError> {
        let Some(home) = self.homes.get(channel) else {
            return Ok(None);
        };
        if home == self.me {
            let log = self.local(channel)?;
            let log = log.lock().await;
            return Ok(log.groups.get(group).copied());
        }
        let req = Request::Committed {
            channel: channel.to_string(),
            group: group.to_string(),
        };
        match remote::ask(&self.node, channel, &home, req).await? {
            Response::Committed(c) => Ok(c),
            other => Err(remote::unexpected(channel, "committed", other)),
        }
    }

    /// A durable channel's head and its groups' committed offsets, from its home (`None`: not
    /// a durable channel this node knows of).
    pub async fn groups(
        &self,
        channel: &str,
    ) -> Result<Option<(u64, BTreeMap<String, u64>)>, BrokerError> {
        let Some(home) = self.homes.get(channel) else {
            return Ok(None);
        };
        if home == self.me {
            return self.groups_local(channel).await.map(Some);
        }
        let req = Request::Groups {
            channel: channel.to_string(),
        };
        match remote::ask(&self.node, channel, &home, req).await? {
            Response::Groups { head, committed } => {
                Ok(Some((head, committed.into_iter().collect())))
            }
            other => Err(remote::unexpected(channel, "groups", other)),
        }
    }

    /// [`Durable::groups`] of a log homed here.
    pub(crate) async fn groups_local(
        &self,
        channel: &str,
    ) -> Result<(u64, BTreeMap<String, u64>), BrokerError> {
        let log = self.local(channel)?;
        let log = log.lock().await;
        Ok((log.len(), log.groups.clone()))
    }

    /// Record a group's next offset (best effort, asynchronous).
    pub fn commit(&self, channel: &str, group: &str, next: u64) {
        let Some(home) = self.homes.get(channel) else {
            return;
        };
        if home != self.me {
            let req = Request::Commit {
                channel: channel.to_string(),
                group: group.to_string(),
                next,
            };
            remote::tell(&self.node, &home, req);
            return;
        }
        let Ok(log) = self.local(channel) else {
            return;
        };
        let (channel, group) = (channel.to_string(), group.to_string());
        tokio::spawn(async move {
            let mut log = log.lock().await;
            if let Err(e) = log.commit(&group, next) {
                tracing::warn!("broker: cannot commit {channel}/{group}: {e}");
            }
        });
    }

    /// For each log homed here: its groups' committed offsets and its length (`None`: refused,
    /// with the reason).
    pub async fn local_state(
        &self,
    ) -> BTreeMap<String, Result<(BTreeMap<String, u64>, u64), String>> {
        let logs: Vec<(String, SharedLog)> = self
            .lock_logs()
            .iter()
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect();
        let mut out = BTreeMap::new();
        for (c, l) in logs {
            let l = l.lock().await;
            out.insert(c, Ok((l.groups.clone(), l.len())));
        }
        for (c, reason) in self.lock_refused().iter() {
            out.insert(c.clone(), Err(reason.clone()));
        }
        out
    }
}

/// The declared channels: the `list` read from [`DECLARED_FILE`], plus each `<channel>.log`
/// among the `files` beside it whose name is a valid channel, sorted, each once.
fn merge_declared(mut list: Vec<String>, files: &[String]) -> Vec<String> {
    for name in files {
        if let Some(c) = name.strip_suffix(".log") {
            if valid_channel(c).is_ok() && !list.iter().any(|l| l == c) {
                list.push(c.to_string());
            }
        }
    }
    list.sort();
    list
}

/// Appended events as fanned-out items, numbered from `first`, their log offset.
fn numbered(events: Vec<Arc<str>>, first: u64) -> Vec<Item> {
    events
        .into_iter()
        .zip(first..)
        .map(|(event, offset)| Item {
            event,
            offset: Some(offset),
        })
        .collect()
}

/// Records one read answers at most: what was asked, up to [`READ_MAX`].
fn read_max(asked: u64) -> u64 {
    asked.min(READ_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn log_files_beside_the_list_are_declared_too_sorted_and_once() {
        let list = strings(&["orders", "billing"]);
        let files = strings(&["channels.json", "orders.log", "audit.log", "billing.log"]);
        assert_eq!(
            merge_declared(list, &files),
            strings(&["audit", "billing", "orders"])
        );
    }

    #[test]
    fn without_a_list_the_log_files_are_the_declared_channels() {
        let files = strings(&["b.log", "a.log", "a.groups", "notes.txt"]);
        assert_eq!(merge_declared(Vec::new(), &files), strings(&["a", "b"]));
        assert_eq!(merge_declared(Vec::new(), &[]), Vec::<String>::new());
    }

    #[test]
    fn a_log_file_whose_name_is_no_channel_is_ignored() {
        let bad = ".log".to_string();
        assert!(valid_channel("").is_err());
        assert_eq!(merge_declared(Vec::new(), &[bad]), Vec::<String>::new());
    }

    #[test]
    fn appended_events_carry_consecutive_offsets_from_the_first() {
        let events: Vec<Arc<str>> = vec!["a".into(), "b".into(), "c".into()];
        let items = numbered(events, 41);
        let got: Vec<(String, Option<u64>)> = items
            .iter()
            .map(|i| (i.event.to_string(), i.offset))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Some(41)),
                ("b".to_string(), Some(42)),
                ("c".to_string(), Some(43))
            ]
        );
        assert!(numbered(Vec::new(), 7).is_empty());
    }

    #[test]
    fn a_read_answers_at_most_read_max_records() {
        assert_eq!(read_max(0), 0);
        assert_eq!(read_max(10), 10);
        assert_eq!(read_max(READ_MAX), READ_MAX);
        assert_eq!(read_max(READ_MAX + 1), READ_MAX);
        assert_eq!(read_max(u64::MAX), READ_MAX);
    }
}
