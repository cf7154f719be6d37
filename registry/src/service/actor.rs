//! The registry actor: one per node, keeps the view and serves requests.

use std::{
    collections::{BTreeMap, HashSet},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use runtime::Node;
use tokio::sync::mpsc;

use super::{
    hints::{Hint, Hints},
    model::{key, Instance, RegistryError, WatchEvent, WatchKind, KEY_PREFIX},
    peer,
};

pub enum RegistryMsg {
    Register(Instance, RpcReplyPort<Result<Instance, RegistryError>>),
    Deregister(String, String, RpcReplyPort<Result<(), RegistryError>>),
    DeregisterAll(RpcReplyPort<usize>),
    List(Option<String>, RpcReplyPort<Vec<Instance>>),
    Watch(Option<String>, mpsc::Sender<WatchEvent>, RpcReplyPort<()>),
    Refresh,
    /// A change pushed by the node an instance is registered on (the fast path).
    Hint(Hint),
}

impl ractor::Message for RegistryMsg {}

#[derive(Clone)]
pub(crate) struct RegistryActor {
    pub(crate) node: Node,
    pub(crate) counters: std::sync::Arc<peer::HintCounters>,
}

type Key = (String, String);

pub(crate) struct State {
    view: BTreeMap<Key, Instance>,
    watchers: Vec<(Option<String>, mpsc::Sender<WatchEvent>)>,
    hints: Hints,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the view is refreshed even without a change notification.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

impl RegistryActor {
    async fn scan(&self) -> BTreeMap<Key, Instance> {
        let mut view = BTreeMap::new();
        for (node, k, v) in self.node.gossip_scan(KEY_PREFIX).await {
            match serde_json::from_str::<Instance>(&v) {
                Ok(i) if i.node == node => {
                    view.insert((i.service.clone(), i.id.clone()), i);
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(%node, key = %k, "ignoring a malformed registry entry");
                }
            }
        }
        view
    }

    async fn refresh(&self, state: &mut State) {
        let mut new = self.scan().await;
        if !state.hints.is_empty() {
            let live: HashSet<String> = self
                .node
                .members()
                .await
                .into_iter()
                .filter(|m| m.state == runtime::MemberState::Alive)
                .map(|m| m.name)
                .collect();
            state
                .hints
                .overlay(&mut new, |n| live.contains(n), Instant::now());
        }
        let mut events = Vec::new();
        for (k, old) in &state.view {
            match new.get(k) {
                None => events.push(WatchEvent {
                    event: WatchKind::Removed,
                    instance: old.clone(),
                }),
                Some(now) if now != old => events.push(WatchEvent {
                    event: WatchKind::Changed,
                    instance: now.clone(),
                }),
                Some(_) => {}
            }
        }
        for (k, now) in &new {
            if !state.view.contains_key(k) {
                events.push(WatchEvent {
                    event: WatchKind::Added,
                    instance: now.clone(),
                });
            }
        }
        state.view = new;
        if events.is_empty() {
            return;
        }
        state.watchers.retain(|(filter, tx)| {
            for e in &events {
                if filter.as_ref().is_some_and(|f| *f != e.instance.service) {
                    continue;
                }
                // A watcher that cannot keep up (or went away) is dropped, never waited for.
                if tx.try_send(e.clone()).is_err() {
                    return false;
                }
            }
            true
        });
    }

    /// Send a change of one of this node's instances to the other nodes ahead of gossip.
    fn push(&self, service: &str, id: &str, instance: Option<String>) {
        let hint = Hint {
            origin: self.node.name().to_string(),
            service: service.to_string(),
            id: id.to_string(),
            instance,
        };
        peer::push(&self.node, &hint, &self.counters);
    }

    fn own(&self, state: &State) -> Vec<Instance> {
        state
            .view
            .values()
            .filter(|i| i.node == self.node.name())
            .cloned()
            .collect()
    }
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<RegistryMsg>,
        _: (),
    ) -> Result<State, ActorProcessingErr> {
        let mut tasks = Vec::new();
        if let Some(mut changes) = self.node.gossip_changes().await {
            let me = myself.clone();
            tasks.push(tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    if me.cast(RegistryMsg::Refresh).is_err() {
                        break;
                    }
                }
            }));
        }
        tasks.push(myself.send_interval(REFRESH_EVERY, || RegistryMsg::Refresh));
        let mut state = State {
            view: BTreeMap::new(),
            watchers: Vec::new(),
            hints: Hints::default(),
            tasks,
        };
        self.refresh(&mut state).await;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<RegistryMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        for t in state.tasks.drain(..) {
            t.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Register(instance, reply) => match serde_json::to_string(&instance) {
                Ok(value) => {
                    // (`Registration::into_instance` checked the size already)
                    let k = key(&instance.service, &instance.id);
                    if self.node.gossip_set(&k, &value).await.is_err() {
                        let _ = reply.send(Err(RegistryError::TooLarge {
                            size: k.len() + value.len(),
                            limit: super::MAX_INSTANCE_BYTES,
                        }));
                        return Ok(());
                    }
                    self.push(&instance.service, &instance.id, Some(value));
                    self.refresh(state).await;
                    tracing::info!(service = %instance.service, id = %instance.id, address = %instance.address, "registered");
                    let _ = reply.send(Ok(instance));
                }
                Err(e) => {
                    let _ = reply.send(Err(RegistryError::Invalid(e.to_string())));
                }
            },
            RegistryMsg::Deregister(service, id, reply) => {
                let k = (service.clone(), id.clone());
                let result = match state.view.get(&k) {
                    Some(i) if i.node == self.node.name() => {
                        self.node.gossip_delete(&key(&service, &id)).await;
                        self.push(&service, &id, None);
                        self.refresh(state).await;
                        tracing::info!(%service, %id, "deregistered");
                        Ok(())
                    }
                    Some(i) => Err(RegistryError::NotFound {
                        service,
                        id,
                        hint: format!(
                            " (it is registered on node '{}'; deregister it there)",
                            i.node
                        ),
                    }),
                    None => Err(RegistryError::NotFound {
                        service,
                        id,
                        hint: String::new(),
                    }),
                };
                let _ = reply.send(result);
            }
            RegistryMsg::DeregisterAll(reply) => {
                let own = self.own(state);
                for i in &own {
                    self.node.gossip_delete(&key(&i.service, &i.id)).await;
                    self.push(&i.service, &i.id, None);
                }
                self.refresh(state).await;
                let _ = reply.send(own.len());
            }
            RegistryMsg::List(filter, reply) => {
                self.refresh(state).await;
                let list = state
                    .view
                    .values()
                    .filter(|i| filter.as_ref().is_none_or(|f| *f == i.service))
                    .cloned()
                    .collect();
                let _ = reply.send(list);
            }
            RegistryMsg::Watch(filter, tx, reply) => {
                self.refresh(state).await;
                let mut ok = true;
                for i in state.view.values() {
                    if filter.as_ref().is_some_and(|f| *f != i.service) {
                        continue;
                    }
                    let e = WatchEvent {
                        event: WatchKind::Added,
                        instance: i.clone(),
                    };
                    if tx.try_send(e).is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    state.watchers.push((filter, tx));
                }
                let _ = reply.send(());
            }
            RegistryMsg::Refresh => self.refresh(state).await,
            RegistryMsg::Hint(hint) => {
                if hint.origin == self.node.name() {
                    tracing::warn!(origin = %hint.origin, "ignoring a registry hint claiming to come from this node");
                } else if let Err(e) = state.hints.record(hint, Instant::now()) {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "ignoring a registry hint");
                } else {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    self.refresh(state).await;
                }
            }
        }
        Ok(())
    }
}
