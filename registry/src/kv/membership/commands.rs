//! Membership requests served on the leader: a node's join as a learner, and the `members`
//! commands (list, add, remove, promote), refused when they would lose the quorum.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use openraft::{ChangeMembers, ServerState};
use runtime::MemberState;

use super::{
    decide::check_quorum,
    view::{adverts, caught_up, live_nodes, progress},
};
use crate::kv::{
    node_id,
    request::{MemberInfo, MemberOp, Response},
    validate::write_error,
    CmdResult, Kv, KvError, KvNode, NodeId,
};

impl Kv {
    /// Add `name` (of store `store`) as a learner, unless it is a member already.
    pub(crate) async fn serve_join(
        &self,
        name: String,
        store: String,
    ) -> Result<Response, KvError> {
        let mine = self.store_id();
        if mine.as_deref() != Some(store.as_str()) {
            return Err(KvError::Invalid(format!(
                "node '{name}' belongs to KV store {store}, this store is {}",
                mine.unwrap_or_else(|| "none".into())
            )));
        }
        let id = node_id(&name);
        let known = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if !known {
            self.add_learner(&name, false).await?;
            tracing::info!(learner = %name, "kv: learner added");
        }
        Ok(Response::Write(CmdResult::None))
    }

    async fn add_learner(&self, name: &str, blocking: bool) -> Result<(), KvError> {
        let add = self.inner.raft.add_learner(
            node_id(name),
            KvNode {
                name: name.to_string(),
            },
            blocking,
        );
        match tokio::time::timeout(Duration::from_secs(10), add).await {
            Err(_) => Err(KvError::NoQuorum(format!(
                "adding learner '{name}' was not done within 10 s"
            ))),
            Ok(Err(e)) => Err(write_error(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Run a membership operation (this node must be the leader).
    pub(crate) async fn serve_members(&self, op: MemberOp) -> Result<Vec<MemberInfo>, KvError> {
        let raft = &self.inner.raft;
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(KvError::NotLeader {
                leader: m.current_leader.and_then(|l| self.name_of(l)),
            });
        }
        let membership = m.membership_config.membership().clone();
        let live = live_nodes(self).await;
        let name_of = |id: &NodeId| membership.get_node(id).map(|n| n.name.clone());
        let voters: BTreeSet<String> = membership.voter_ids().filter_map(|i| name_of(&i)).collect();
        let is_learner = |n: &str| {
            membership
                .learner_ids()
                .any(|i| name_of(&i).as_deref() == Some(n))
        };
        let refuse = |what: &str, why: String| KvError::Invalid(format!("cannot {what}: {why}"));
        if !matches!(op, MemberOp::List) && membership.get_joint_config().len() > 1 {
            return Err(KvError::Unavailable(
                "a membership change is in progress; try again".into(),
            ));
        }
        let healthy_with = |extra: &str, id: NodeId| -> BTreeSet<String> {
            let mut h: BTreeSet<String> = voters
                .iter()
                .filter(|v| live.contains(*v))
                .cloned()
                .collect();
            if live.contains(extra) && caught_up(&m, id) {
                h.insert(extra.to_string());
            }
            h
        };
        let change = |c: ChangeMembers<NodeId, KvNode>| async move {
            match tokio::time::timeout(Duration::from_secs(10), raft.change_membership(c, false))
                .await
            {
                Err(_) => Err(KvError::NoQuorum(
                    "the membership change was not committed within 10 s".into(),
                )),
                Ok(Err(e)) => Err(write_error(e)),
                Ok(Ok(_)) => Ok(()),
            }
        };
        match op {
            MemberOp::List => {}
            MemberOp::Add { name, learner } => {
                validate_name(&name)?;
                let what = format!("add '{name}'");
                if !live.contains(&name) {
                    return Err(refuse(
                        &what,
                        format!("node '{name}' is not alive and connected in this cluster"),
                    ));
                }
                let ad = adverts(self).await.into_iter().find(|(n, _)| *n == name);
                if let Some((_, a)) = &ad {
                    if a.store.is_some() && a.store != self.store_id() {
                        return Err(refuse(
                            &what,
                            format!(
                                "node '{name}' belongs to another KV store ({})",
                                a.store.clone().unwrap_or_default()
                            ),
                        ));
                    }
                }
                if voters.contains(&name) {
                    return Err(refuse(&what, format!("'{name}' is a voter already")));
                }
                let id = node_id(&name);
                if !is_learner(&name) {
                    self.add_learner(&name, true).await?;
                }
                if !learner {
                    let m2 = raft.metrics().borrow().clone();
                    let mut h: BTreeSet<String> = voters
                        .iter()
                        .filter(|v| live.contains(*v))
                        .cloned()
                        .collect();
                    if caught_up(&m2, id) {
                        h.insert(name.clone());
                    }
                    let mut new = voters.clone();
                    new.insert(name.clone());
                    check_quorum(&new, &h).map_err(|e| refuse(&what, e))?;
                    change(ChangeMembers::AddVoterIds([id].into())).await?;
                }
            }
            MemberOp::Promote { name } => {
                validate_name(&name)?;
                let what = format!("promote '{name}'");
                if voters.contains(&name) {
                    return Err(refuse(&what, format!("'{name}' is a voter already")));
                }
                if !is_learner(&name) {
                    return Err(refuse(
                        &what,
                        format!("'{name}' is not a learner of this store (add it first)"),
                    ));
                }
                let id = node_id(&name);
                if !live.contains(&name) {
                    return Err(refuse(
                        &what,
                        format!("node '{name}' is not alive and connected"),
                    ));
                }
                if !caught_up(&m, id) {
                    return Err(refuse(
                        &what,
                        format!(
                            "'{name}' is {} log entries behind; wait for it to catch up",
                            progress(&m, id)
                                .1
                                .map(|l| l.to_string())
                                .unwrap_or_else(|| "an unknown number of".into())
                        ),
                    ));
                }
                let mut new = voters.clone();
                new.insert(name.clone());
                check_quorum(&new, &healthy_with(&name, id)).map_err(|e| refuse(&what, e))?;
                change(ChangeMembers::AddVoterIds([id].into())).await?;
            }
            MemberOp::Remove { name } => {
                validate_name(&name)?;
                let what = format!("remove '{name}'");
                let id = node_id(&name);
                if voters.contains(&name) {
                    let mut new = voters.clone();
                    new.remove(&name);
                    let healthy: BTreeSet<String> =
                        new.iter().filter(|v| live.contains(*v)).cloned().collect();
                    check_quorum(&new, &healthy).map_err(|e| refuse(&what, e))?;
                    change(ChangeMembers::RemoveVoters([id].into())).await?;
                } else if is_learner(&name) {
                    change(ChangeMembers::RemoveNodes([id].into())).await?;
                } else {
                    return Err(refuse(
                        &what,
                        format!("'{name}' is not a member of this store"),
                    ));
                }
            }
        }
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let states: HashMap<String, MemberState> = self
            .inner
            .rt
            .members()
            .await
            .into_iter()
            .map(|mm| (mm.name, mm.state))
            .collect();
        let mut out: Vec<MemberInfo> = membership
            .nodes()
            .map(|(id, node)| {
                let (match_index, lag) = progress(&m, *id);
                MemberInfo {
                    name: node.name.clone(),
                    id: *id,
                    role: if voter_ids.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    leader: m.current_leader == Some(*id),
                    state: match states.get(&node.name) {
                        Some(MemberState::Alive) => "alive",
                        Some(_) => "dead",
                        None => "unknown",
                    }
                    .into(),
                    match_index,
                    lag,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn validate_name(name: &str) -> Result<(), KvError> {
    if name.is_empty() || name.len() > 255 {
        return Err(KvError::Invalid(format!(
            "'{name}' is not a node name (1 to 255 bytes)"
        )));
    }
    Ok(())
}
