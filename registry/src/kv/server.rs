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
    Kv, KvError, KvStatus, Proposal, TypeConfig,
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
                        match tokio::time::timeout(timeout, rx).await {
                            Err(_) => None,
                            Ok(Ok(r)) => Some(r),
                            Ok(Err(_)) => {
                                Some(Err(KvError::Unavailable("the KV store is stopping".into())))
                            }
                        }
                    }
                    false => tokio::time::timeout(timeout, raft.client_write(p))
                        .await
                        .ok()
                        .map(|r| r.map(|r| r.data).map_err(write_error)),
                };
                match res {
                    None => Err(KvError::NoQuorum(
                        "the write was not committed within 5 s (is a majority of the voters up?); it may still be applied"
                            .into(),
                    )),
                    Some(r) => r.map(Response::Write),
                }
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
                    .range(prefix, limit.min(10_000))
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
                let mut from = if from == 0 { sm.revision() + 1 } else { from };
                let deadline =
                    tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(30_000));
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
        let role = match m.state {
            _ if self.store_id().is_none() => "no store",
            _ if membership.get_node(&self.inner.id).is_none() => {
                if membership.nodes().next().is_none() {
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
        };
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
        let mine = self.store_id();
        if mine.as_deref() != Some(env.store.as_str()) {
            return RaftResp::Refused(match mine {
                Some(m) => format!(
                    "node '{}' belongs to KV store {m}, not {}",
                    self.inner.node, env.store
                ),
                None => format!("node '{}' has not joined a KV store", self.inner.node),
            });
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
