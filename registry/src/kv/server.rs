//! The serving side: a [`Request`] answered on this node (after forwarding, if any), and the
//! Raft RPCs from the other members.

use std::time::Duration;

use openraft::{
    error::{CheckIsLeaderError, RaftError},
    Raft, ServerState,
};

use super::{
    batcher::batchable,
    net::{RaftEnvelope, RaftReq, RaftResp},
    request::{Request, Response},
    validate::{validate, validate_key, write_error},
    CmdResult, Kv, KvError, KvStatus, Proposal, TypeConfig,
};

impl Kv {
    /// Serve a request on this node (no forwarding).
    pub(crate) async fn serve(&self, req: Request) -> Result<Response, KvError> {
        match req {
            Request::Write { id, cmd } => {
                validate(&cmd)?;
                let raft = &self.inner.raft;
                let p = Proposal { request: id, cmd };
                let timeout = Duration::from_secs(5);
                let res = match batchable(&p.cmd) {
                    true => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        self.inner
                            .batcher
                            .send((p, tx))
                            .map_err(|_| KvError::Unavailable("the KV store is stopping".into()))?;
                        tokio::time::timeout(timeout, rx)
                            .await
                            .ok()
                            .map(batcher_reply)
                    }
                    false => tokio::time::timeout(timeout, raft.client_write(p))
                        .await
                        .ok()
                        .map(|r| r.map(|r| r.data).map_err(write_error)),
                };
                write_outcome(res)
            }
            Request::Get { key, linearizable } => {
                validate_key(&key)?;
                self.read_barrier(linearizable).await?;
                let (e, rev) = self.inner.sm.get(key).await.map_err(KvError::Storage)?;
                Ok(Response::Get(e, rev))
            }
            Request::Range {
                prefix,
                linearizable,
                limit,
            } => {
                self.read_barrier(linearizable).await?;
                let (e, rev) = self
                    .inner
                    .sm
                    .range(prefix, range_limit(limit))
                    .await
                    .map_err(KvError::Storage)?;
                Ok(Response::Range(e, rev))
            }
            Request::Status => {
                let forward = !self.is_member()
                    && !self
                        .inner
                        .peers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_empty();
                if forward {
                    return Err(self.not_member());
                }
                self.local_status().await.map(Response::Status)
            }
            Request::Join { name, store } => {
                validate_key(&name)?;
                self.serve_join(name, store).await
            }
            Request::Members(op) => self.serve_members(op).await.map(Response::Members),
            Request::Lease(op) => self.serve_lease(op).await,
            Request::Query {
                query,
                linearizable,
            } => {
                self.read_barrier(linearizable).await?;
                self.inner.sm.query(query).await.map(Response::Query)
            }
            Request::Watch {
                prefix,
                from,
                wait_ms,
            } => {
                self.read_barrier(false).await?;
                let sm = &self.inner.sm;
                let mut rx = sm.subscribe_revision();
                let mut from = watch_start(from, sm.revision());
                let deadline = tokio::time::Instant::now() + watch_wait(wait_ms);
                loop {
                    let b = sm.history(prefix.clone(), from, 1000).await?;
                    if !b.events.is_empty() || tokio::time::Instant::now() >= deadline {
                        return Ok(Response::Watch(b));
                    }
                    from = b.next;
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        let b = sm.history(prefix.clone(), from, 1000).await?;
                        return Ok(Response::Watch(b));
                    }
                }
            }
        }
    }

    /// Before a read: a linearizable one checks leadership with a quorum; any read needs this
    /// node to hold a replica (a node still joining sends the reader elsewhere).
    async fn read_barrier(&self, linearizable: bool) -> Result<(), KvError> {
        if linearizable {
            self.linearize().await
        } else if self.is_member() {
            Ok(())
        } else {
            Err(self.not_member())
        }
    }

    /// "Ask someone else": the answer of a node that holds no replica yet.
    pub(crate) fn not_member(&self) -> KvError {
        let leader = {
            let m = self.inner.raft.metrics();
            let l = m.borrow().current_leader;
            l
        };
        KvError::NotLeader {
            leader: leader.and_then(|l| self.name_of(l)),
        }
    }

    /// Confirm leadership with a majority before a linearizable read. A round that a majority
    /// did not answer in time (heartbeats late on a loaded machine) is tried again until 5 s
    /// have passed, rather than failing the read at once.
    pub(super) async fn linearize(&self) -> Result<(), KvError> {
        let raft = &self.inner.raft;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, raft.ensure_linearizable()).await {
                Err(_) => {
                    return Err(KvError::NoQuorum(
                        "the leader could not confirm its leadership with a majority within 5 s"
                            .into(),
                    ))
                }
                Ok(Ok(_)) => return self.wait_own_term_applied(raft).await,
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                    return Err(KvError::NotLeader {
                        leader: f.leader_node.map(|n| n.name),
                    })
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                    if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                        return Err(KvError::NoQuorum(q.to_string()));
                    }
                    // Back off a little before the next round.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => return Err(KvError::Unavailable(e.to_string())),
            }
        }
    }

    /// openraft 0.9 uses the leader's commit index as the read index even before the blank
    /// entry of its term is committed; a new leader's commit index can lag what the previous
    /// leader acknowledged. Wait until an entry of the current term is applied: then everything
    /// committed before the term is applied too.
    async fn wait_own_term_applied(&self, raft: &Raft<TypeConfig>) -> Result<(), KvError> {
        let mut rx = raft.metrics();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            {
                let m = rx.borrow_and_update();
                if m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term) {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(KvError::Unavailable("Raft stopped".into())),
                Err(_) => {
                    return Err(KvError::NoQuorum(
                        "the new leader could not commit an entry of its term within 5 s".into(),
                    ))
                }
            }
        }
    }

    async fn local_status(&self) -> Result<KvStatus, KvError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        let committed = raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        let membership = m.membership_config.membership();
        let role = role_name(
            self.store_id().is_some(),
            membership.get_node(&self.inner.id).is_some(),
            membership.nodes().next().is_none(),
            m.state,
        );
        let sm = &self.inner.sm;
        Ok(KvStatus {
            node: self.inner.node.clone(),
            role: role.into(),
            store: self.store_id(),
            leader: m.current_leader.and_then(|l| self.name_of(l)),
            voters: {
                let mut v: Vec<String> = membership
                    .voter_ids()
                    .filter_map(|id| membership.get_node(&id).map(|n| n.name.clone()))
                    .collect();
                v.sort();
                v
            },
            learners: {
                let mut l: Vec<String> = membership
                    .learner_ids()
                    .filter_map(|id| membership.get_node(&id).map(|n| n.name.clone()))
                    .collect();
                l.sort();
                l
            },
            term: m.current_term,
            commit_index: committed.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            revision: sm.revision(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            etcd_addr: self.etcd_addr().map(|a| a.to_string()),
        })
    }

    /// Serve a Raft RPC from another member of this node's store (refused from any other).
    pub(crate) async fn serve_raft(&self, env: RaftEnvelope) -> RaftResp {
        if let Some(why) = store_refusal(&self.inner.node, self.store_id().as_deref(), &env.store) {
            return RaftResp::Refused(why);
        }
        let raft = &self.inner.raft;
        match env.req {
            RaftReq::Append(r) => RaftResp::Append(raft.append_entries(r).await),
            RaftReq::Vote(r) => RaftResp::Vote(raft.vote(r).await),
            RaftReq::Snapshot(r) => RaftResp::Snapshot(raft.install_snapshot(r).await),
        }
    }

    /// Ask for a snapshot now (log compaction follows); for tests and operators.
    pub async fn trigger_snapshot(&self) -> Result<(), KvError> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

/// Most entries one range read answers.
const RANGE_MAX: usize = 10_000;
/// Longest a watch poll waits for a change.
const WATCH_WAIT_MAX: Duration = Duration::from_secs(30);

/// What the batcher sent back for a write (its channel closed: the store is stopping).
fn batcher_reply(
    reply: Result<Result<CmdResult, KvError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<CmdResult, KvError> {
    reply.unwrap_or_else(|_| Err(KvError::Unavailable("the KV store is stopping".into())))
}

/// The answer to a write: its result, or (`None`: not committed in time) "no quorum".
fn write_outcome(res: Option<Result<CmdResult, KvError>>) -> Result<Response, KvError> {
    match res {
        None => Err(KvError::NoQuorum(
            "the write was not committed within 5 s (is a majority of the voters up?); it may still be applied"
                .into(),
        )),
        Some(r) => r.map(Response::Write),
    }
}

/// Entries a range read answers at most: the asked `limit`, up to [`RANGE_MAX`].
fn range_limit(limit: usize) -> usize {
    limit.min(RANGE_MAX)
}

/// The first revision a watch poll reports: `from`, or (0) the one after the store's
/// `revision` now.
fn watch_start(from: u64, revision: u64) -> u64 {
    if from == 0 {
        revision + 1
    } else {
        from
    }
}

/// How long a watch poll waits for a change: `wait_ms`, up to [`WATCH_WAIT_MAX`].
fn watch_wait(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms).min(WATCH_WAIT_MAX)
}

/// A node's role for its status: whether it knows its store, is in the membership it
/// replicated, whether that membership is empty, and its Raft state.
fn role_name(
    has_store: bool,
    in_membership: bool,
    no_members: bool,
    state: ServerState,
) -> &'static str {
    match state {
        _ if !has_store => "no store",
        _ if !in_membership => {
            if no_members {
                "joining"
            } else {
                "removed"
            }
        }
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Why node `node`, of store `mine`, refuses a Raft RPC of store `theirs` (`None`: it is
/// its own store's).
fn store_refusal(node: &str, mine: Option<&str>, theirs: &str) -> Option<String> {
    match mine {
        Some(m) if m == theirs => None,
        Some(m) => Some(format!(
            "node '{node}' belongs to KV store {m}, not {theirs}"
        )),
        None => Some(format!("node '{node}' has not joined a KV store")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_not_committed_in_time_is_no_quorum() {
        let r = write_outcome(None);
        assert!(
            matches!(&r, Err(KvError::NoQuorum(m)) if m.contains("not committed within 5 s")),
            "{r:?}"
        );
    }

    #[test]
    fn a_committed_write_answers_its_result_and_a_failed_one_its_error() {
        let ok = CmdResult::Delete {
            revision: 3,
            prev: None,
        };
        let r = write_outcome(Some(Ok(ok.clone())));
        assert!(
            matches!(&r, Ok(Response::Write(got)) if *got == ok),
            "{r:?}"
        );
        let e = KvError::NotLeader { leader: None };
        let r = write_outcome(Some(Err(e.clone())));
        assert!(matches!(&r, Err(got) if *got == e), "{r:?}");
    }

    #[tokio::test]
    async fn a_closed_batcher_means_the_store_is_stopping() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<CmdResult, KvError>>();
        drop(tx);
        assert_eq!(
            batcher_reply(rx.await),
            Err(KvError::Unavailable("the KV store is stopping".into()))
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Ok(CmdResult::None));
        assert_eq!(batcher_reply(rx.await), Ok(CmdResult::None));
    }

    #[test]
    fn range_reads_and_watch_waits_are_capped() {
        assert_eq!(range_limit(0), 0);
        assert_eq!(range_limit(RANGE_MAX), RANGE_MAX);
        assert_eq!(range_limit(RANGE_MAX + 1), RANGE_MAX);
        assert_eq!(watch_wait(0), Duration::ZERO);
        assert_eq!(watch_wait(10_000), Duration::from_secs(10));
        assert_eq!(watch_wait(30_000), WATCH_WAIT_MAX);
        assert_eq!(watch_wait(u64::MAX), WATCH_WAIT_MAX);
    }

    #[test]
    fn a_watch_from_zero_starts_after_the_current_revision() {
        assert_eq!(watch_start(0, 41), 42);
        assert_eq!(watch_start(0, 0), 1);
        assert_eq!(watch_start(5, 41), 5);
    }

    #[test]
    fn the_role_says_no_store_then_joining_or_removed_before_the_raft_state() {
        assert_eq!(
            role_name(false, true, false, ServerState::Leader),
            "no store"
        );
        assert_eq!(
            role_name(true, false, true, ServerState::Learner),
            "joining"
        );
        assert_eq!(
            role_name(true, false, false, ServerState::Follower),
            "removed"
        );
        assert_eq!(role_name(true, true, false, ServerState::Leader), "leader");
        assert_eq!(
            role_name(true, true, false, ServerState::Follower),
            "follower"
        );
        assert_eq!(
            role_name(true, true, false, ServerState::Candidate),
            "candidate"
        );
        assert_eq!(
            role_name(true, true, false, ServerState::Learner),
            "learner"
        );
        assert_eq!(
            role_name(true, true, false, ServerState::Shutdown),
            "shutdown"
        );
    }

    #[test]
    fn raft_rpcs_of_another_store_or_before_joining_are_refused() {
        assert_eq!(store_refusal("n1", Some("s1"), "s1"), None);
        assert_eq!(
            store_refusal("n1", Some("s1"), "s2"),
            Some("node 'n1' belongs to KV store s1, not s2".into())
        );
        assert_eq!(
            store_refusal("n1", None, "s2"),
            Some("node 'n1' has not joined a KV store".into())
        );
    }
}
