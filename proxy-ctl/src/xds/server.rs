//! The tonic layer of the ADS server: one task per stream that feeds the client's requests and
//! the node's snapshots to the stream's state machine ([`Sotw`] or [`Delta`]) and sends what it
//! returns. Bounded: at most [`MAX_STREAMS`] open streams (one more gets
//! `RESOURCE_EXHAUSTED`), a bad request ends its stream with `INVALID_ARGUMENT` and the reason,
//! at most one response per type outstanding per stream.
//!
//! The server runs as the `xds` actor under the node's `system` supervisor: a restart serves
//! the same socket again.

use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use super::{delta::Delta, sotw::Sotw, status::XdsStatus, Nack, StreamReport, MAX_STREAMS};
use crate::{
    snapshot::{Snapshot, SnapshotCell},
    ProxyError,
};

/// Responses queued per stream (at most one per type is outstanding, so this never fills
/// with a client that reads).
const QUEUE: usize = 8;

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The aggregated discovery service of one node.
#[derive(Debug, Clone)]
pub struct Ads {
    cell: SnapshotCell,
    status: XdsStatus,
    streams: Arc<Semaphore>,
}

impl Ads {
    /// A service serving the snapshots of `cell`, reporting into `status`.
    pub fn new(cell: SnapshotCell, status: XdsStatus) -> Ads {
        Ads {
            cell,
            status,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            self.status.refused();
            Status::resource_exhausted(format!(
                "too many xDS streams open on this node (at most {MAX_STREAMS})"
            ))
        })
    }
}

/// What the tonic layer needs from a state machine.
trait Machine: Default + Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    const MODE: &'static str;
    fn request(&mut self, r: Self::Req, s: &Snapshot) -> Result<Vec<Self::Resp>, ProxyError>;
    fn snapshot(&mut self, s: &Snapshot) -> Vec<Self::Resp>;
    fn nacks(&mut self) -> Vec<Nack>;
    fn report(&self) -> StreamReport;
}

impl Machine for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const MODE: &'static str = "sotw";
    fn request(
        &mut self,
        r: DiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DiscoveryResponse>, ProxyError> {
        self.on_request(r, s)
    }
    fn snapshot(&mut self, s: &Snapshot) -> Vec<DiscoveryResponse> {
        self.on_snapshot(s)
    }
    fn nacks(&mut self) -> Vec<Nack> {
        self.take_nacks()
    }
    fn report(&self) -> StreamReport {
        Sotw::report(self)
    }
}

impl Machine for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const MODE: &'static str = "delta";
    fn request(
        &mut self,
        r: DeltaDiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ProxyError> {
        self.on_request(r, s)
    }
    fn snapshot(&mut self, s: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        self.on_snapshot(s)
    }
    fn nacks(&mut self) -> Vec<Nack> {
        self.take_nacks()
    }
    fn report(&self) -> StreamReport {
        Delta::report(self)
    }
}

impl Ads {
    fn run<M: Machine>(
        &self,
        peer: String,
        mut inbound: Streaming<M::Req>,
    ) -> Result<Out<M::Resp>, Status>
    where
        M::Req: prost::Message + Default,
    {
        let permit = self.admit()?;
        let (tx, rx) = mpsc::channel::<Result<M::Resp, Status>>(QUEUE);
        let status = self.status.clone();
        let mut snaps = self.cell.subscribe();
        let id = status.open(M::MODE, &peer);
        tokio::spawn(async move {
            let _permit = permit;
            let mut machine = M::default();
            loop {
                let out = tokio::select! {
                    msg = inbound.message() => match msg {
                        Ok(Some(req)) => {
                            let snap = snaps.borrow_and_update().clone();
                            match machine.request(req, &snap) {
                                Ok(out) => out,
                                Err(e) => {
                                    tracing::info!(%peer, error = %e, "xDS stream ended: bad request");
                                    let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                                    break;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "xDS stream ended");
                            break;
                        }
                    },
                    changed = snaps.changed() => {
                        if changed.is_err() {
                            break; // the node is shutting down
                        }
                        let snap = snaps.borrow_and_update().clone();
                        machine.snapshot(&snap)
                    }
                };
                let sent = out.len();
                let mut gone = false;
                for r in out {
                    if tx.send(Ok(r)).await.is_err() {
                        gone = true;
                        break;
                    }
                }
                status.update(id, machine.report(), machine.nacks(), sent);
                if gone {
                    break;
                }
            }
            status.close(id);
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

fn peer_of<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Out<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Out<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = peer_of(&request);
        Ok(Response::new(self.run::<Sotw>(peer, request.into_inner())?))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let peer = peer_of(&request);
        Ok(Response::new(
            self.run::<Delta>(peer, request.into_inner())?,
        ))
    }
}

/// Serve `ads` on `listener` until the task is aborted.
pub fn serve(
    listener: std::net::TcpListener,
    ads: Ads,
) -> Result<tokio::task::JoinHandle<()>, ProxyError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| ProxyError::Unavailable(format!("xDS listener: {e}")))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| ProxyError::Unavailable(format!("xDS listener: {e}")))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)));
    Ok(tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(MAX_STREAMS as u32))
            .add_service(AggregatedDiscoveryServiceServer::new(ads))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "xDS server stopped");
        }
    }))
}

/// The `xds` actor: owns the server task (aborted when the actor stops; a restart serves the
/// same socket again).
pub struct XdsActor {
    pub(crate) listener: Arc<std::net::TcpListener>,
    pub(crate) ads: Ads,
}

impl Clone for XdsActor {
    fn clone(&self) -> Self {
        XdsActor {
            listener: self.listener.clone(),
            ads: self.ads.clone(),
        }
    }
}

/// The `xds` actor takes no messages.
#[derive(Debug)]
pub enum XdsMsg {}

impl ractor::Message for XdsMsg {}

impl Actor for XdsActor {
    type Msg = XdsMsg;
    type State = tokio::task::JoinHandle<()>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<XdsMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let l = self.listener.try_clone()?;
        Ok(serve(l, self.ads.clone())?)
    }

    async fn post_stop(
        &self,
        _: ActorRef<XdsMsg>,
        task: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}

/// Bind the xDS socket (port 0: a free one) and say where it is.
pub fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), ProxyError> {
    let l = std::net::TcpListener::bind(addr)
        .map_err(|e| ProxyError::Unavailable(format!("cannot listen for xDS on {addr}: {e}")))?;
    let local = l
        .local_addr()
        .map_err(|e| ProxyError::Unavailable(format!("xDS listener: {e}")))?;
    Ok((l, local))
}
