//! `etcdserverpb.Watch`: one bidirectional stream carries many watches. Each watch is a task
//! reading this node's copy of the history (so a watch survives a leader change: it follows
//! the local replica), from its start revision on, in revision order.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{codegen::BoxStream, Request, Response, Status, Streaming};

use super::{
    header, key_value,
    kv::key_range,
    pb::{
        etcdserverpb::{self as rpc, watch_request::RequestUnion, watch_server::Watch as WatchApi},
        mvccpb,
    },
};
use crate::kv::{EventKind, KeyRange, Kv, KvError};

/// How often a watch created with `progress_notify` hears of progress when idle (etcd's
/// default).
const PROGRESS_EVERY: Duration = Duration::from_secs(600);
/// Most changes per response.
const PAGE: usize = 1000;

pub(crate) struct WatchService {
    pub(crate) kv: Kv,
}

type Out = mpsc::Sender<Result<rpc::WatchResponse, Status>>;

/// The watches of one stream: their tasks, and the next revision each will send.
#[derive(Default)]
struct Watches {
    tasks: HashMap<i64, tokio::task::JoinHandle<()>>,
    next: Arc<Mutex<HashMap<i64, u64>>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in self.tasks.values() {
            t.abort();
        }
    }
}

/// One watch, as a create request asks for it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WatchSpec {
    /// The watch id the client chose; 0: the stream picks one.
    pub(super) id: i64,
    pub(super) range: KeyRange,
    /// The first revision to send; `None`: from the next one.
    pub(super) from: Option<u64>,
    pub(super) no_put: bool,
    pub(super) no_delete: bool,
    pub(super) prev_kv: bool,
    pub(super) progress: bool,
}

/// The watch a create request asks for, or the status refusing it: an empty or non-UTF-8 key
/// or range end, a negative start revision or watch id, a filter that is neither `NOPUT` nor
/// `NODELETE` are `InvalidArgument`.
pub(super) fn watch_spec(c: rpc::WatchCreateRequest) -> Result<WatchSpec, Status> {
    use rpc::watch_create_request::FilterType;
    if c.start_revision < 0 {
        return Err(Status::invalid_argument(
            "etcdserver: watch start revision is negative",
        ));
    }
    if c.watch_id < 0 {
        return Err(Status::invalid_argument("etcdserver: watch id is negative"));
    }
    let mut no_put = false;
    let mut no_delete = false;
    for f in &c.filters {
        match FilterType::try_from(*f) {
            Ok(FilterType::Noput) => no_put = true,
            Ok(FilterType::Nodelete) => no_delete = true,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "etcdserver: unknown watch filter {f}"
                )))
            }
        }
    }
    let range = key_range(c.key, c.range_end)?;
    Ok(WatchSpec {
        id: c.watch_id,
        range,
        from: (c.start_revision > 0).then_some(c.start_revision as u64),
        no_put,
        no_delete,
        prev_kv: c.prev_kv,
        progress: c.progress_notify,
    })
}

fn response(kv: &Kv, id: i64, rev: u64) -> rpc::WatchResponse {
    rpc::WatchResponse {
        header: Some(header(kv, rev)),
        watch_id: id,
        ..Default::default()
    }
}

/// Follow one watch until the stream closes or it is cancelled.
async fn run_watch(
    kv: Kv,
    w: WatchSpec,
    mut from: u64,
    out: Out,
    next: Arc<Mutex<HashMap<i64, u64>>>,
) {
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let page = match kv.changes(w.range.clone(), from, PAGE).await {
            Ok(p) => p,
            Err(KvError::Compacted { oldest, .. }) => {
                let mut r = response(&kv, w.id, 0);
                r.compact_revision = oldest as i64;
                r.canceled = true;
                r.cancel_reason = "etcdserver: mvcc: required revision has been compacted".into();
                let _ = out.send(Ok(r)).await;
                return;
            }
            Err(e) => {
                let mut r = response(&kv, w.id, 0);
                r.canceled = true;
                r.cancel_reason = e.to_string();
                let _ = out.send(Ok(r)).await;
                return;
            }
        };
        let mut events = Vec::new();
        let mut last = 0;
        for (rev, c) in page.changes {
            last = rev;
            let put = c.kind == EventKind::Put;
            if (put && w.no_put) || (!put && w.no_delete) {
                continue;
            }
            events.push(mvccpb::Event {
                r#type: if put {
                    mvccpb::event::EventType::Put as i32
                } else {
                    mvccpb::event::EventType::Delete as i32
                },
                kv: Some(key_value(c.kv)),
                prev_kv: c.prev.filter(|_| w.prev_kv).map(key_value),
            });
        }
        from = page.next;
        if let Ok(mut n) = next.lock() {
            n.insert(w.id, from);
        }
        if !events.is_empty() {
            let mut r = response(&kv, w.id, last);
            r.events = events;
            if out.send(Ok(r)).await.is_err() {
                return;
            }
            last_sent = tokio::time::Instant::now();
            continue;
        }
        if w.progress && last_sent.elapsed() >= PROGRESS_EVERY {
            if out
                .send(Ok(response(&kv, w.id, from.saturating_sub(1))))
                .await
                .is_err()
            {
                return;
            }
            last_sent = tokio::time::Instant::now();
        }
        let seen = from.saturating_sub(1);
        kv.revision_after(seen, Duration::from_secs(1)).await;
        if out.is_closed() {
            return;
        }
    }
}

async fn serve_stream(kv: Kv, mut input: Streaming<rpc::WatchRequest>, out: Out) {
    let mut watches = Watches::default();
    let mut auto_id: i64 = 0;
    while let Some(msg) = input.next().await {
        let req = match msg {
            Ok(r) => r,
            Err(_) => return,
        };
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                let mut spec = match watch_spec(c) {
                    Ok(w) => w,
                    Err(s) => {
                        let _ = out.send(Err(s)).await;
                        return;
                    }
                };
                if spec.id == 0 {
                    while watches.tasks.contains_key(&auto_id) {
                        auto_id += 1;
                    }
                    spec.id = auto_id;
                }
                let id = spec.id;
                if watches.tasks.contains_key(&id) {
                    let mut r = response(&kv, id, 0);
                    r.created = true;
                    r.canceled = true;
                    r.cancel_reason = "etcdserver: duplicate watch ID".into();
                    let _ = out.send(Ok(r)).await;
                    continue;
                }
                let current = kv.header_info().revision;
                let from = spec.from.unwrap_or(current + 1);
                let mut created = response(&kv, id, current);
                created.created = true;
                if out.send(Ok(created)).await.is_err() {
                    return;
                }
                if let Ok(mut n) = watches.next.lock() {
                    n.insert(id, from);
                }
                let task = tokio::spawn(run_watch(
                    kv.clone(),
                    spec,
                    from,
                    out.clone(),
                    watches.next.clone(),
                ));
                watches.tasks.insert(id, task);
            }
            Some(RequestUnion::CancelRequest(c)) => {
                if let Some(t) = watches.tasks.remove(&c.watch_id) {
                    t.abort();
                    if let Ok(mut n) = watches.next.lock() {
                        n.remove(&c.watch_id);
                    }
                    let mut r = response(&kv, c.watch_id, 0);
                    r.canceled = true;
                    if out.send(Ok(r)).await.is_err() {
                        return;
                    }
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Progress up to the revision every watch of the stream has passed.
                let current = kv.header_info().revision;
                let rev = watches
                    .next
                    .lock()
                    .map(|n| n.values().map(|v| v.saturating_sub(1)).min())
                    .ok()
                    .flatten()
                    .unwrap_or(current)
                    .min(current);
                if out.send(Ok(response(&kv, -1, rev))).await.is_err() {
                    return;
                }
            }
            None => {
                let _ = out
                    .send(Err(Status::invalid_argument(
                        "etcdserver: empty watch request",
                    )))
                    .await;
                return;
            }
        }
    }
}

#[tonic::async_trait]
impl WatchApi for WatchService {
    async fn watch(
        &self,
        req: Request<Streaming<rpc::WatchRequest>>,
    ) -> Result<Response<BoxStream<rpc::WatchResponse>>, Status> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(serve_stream(self.kv.clone(), req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
