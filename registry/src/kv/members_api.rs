//! The public membership API of [`Kv`]: list, add, remove, promote (run on the leader; a change
//! that would leave the new voter set without a live majority is refused with the reason).

use super::{
    request::{MemberInfo, MemberOp, Request, Response},
    Kv, KvError,
};

impl Kv {
    /// Every member of the store (voters and learners), with state and replication progress.
    ///
    /// ```no_run
    /// # async fn f(kv: registry::kv::Kv) -> Result<(), registry::kv::KvError> {
    /// for m in kv.members().await? {
    ///     println!("{} {} lag {:?}", m.name, m.role, m.lag);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn members(&self) -> Result<Vec<MemberInfo>, KvError> {
        self.member_op(MemberOp::List).await
    }

    /// Add a live node of this cluster: as a learner, then (unless `learner`) as a voter.
    pub async fn add_member(&self, name: &str, learner: bool) -> Result<Vec<MemberInfo>, KvError> {
        self.member_op(MemberOp::Add {
            name: name.into(),
            learner,
        })
        .await
    }

    /// Remove a voter or learner from the store.
    pub async fn remove_member(&self, name: &str) -> Result<Vec<MemberInfo>, KvError> {
        self.member_op(MemberOp::Remove { name: name.into() }).await
    }

    /// Make a caught-up learner a voter.
    pub async fn promote_member(&self, name: &str) -> Result<Vec<MemberInfo>, KvError> {
        self.member_op(MemberOp::Promote { name: name.into() })
            .await
    }

    async fn member_op(&self, op: MemberOp) -> Result<Vec<MemberInfo>, KvError> {
        match self.exec(Request::Members(op)).await? {
            Response::Members(m) => Ok(m),
            other => Err(KvError::Unavailable(format!("unexpected answer {other:?}"))),
        }
    }
}
