//! The front door of the actor-transport port: accepts TCP connections for ractor_cluster's
//! `NodeServer` with bounds it does not have itself.
//!
//! * At most [`MAX_UNAUTHENTICATED`] connections may be waiting to authenticate at once; a
//!   connection past that is closed as soon as it is accepted.
//! * A connection must finish TLS (when on) and the cookie challenge within
//!   [`HANDSHAKE_TIMEOUT`], or it is closed (its session actor is stopped).
//! * TLS handshakes run one task per connection, so one slow client no longer holds up the
//!   accept loop (ractor_cluster's own listener awaits each TLS handshake in turn).
//!
//! ractor_cluster always runs a listener of its own: it is bound to a free port on 127.0.0.1
//! and never published, so only local processes can reach it.
//!
//! Counted in `/metrics` as `draft_transport_connections_refused_total` and
//! `draft_transport_unauthenticated`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage, NodeSessionMessage};
use tokio::{net::TcpListener, sync::Semaphore, task::AbortHandle};

use crate::tls::Tls;

/// Connections that may be waiting to authenticate at once.
pub(crate) const MAX_UNAUTHENTICATED: usize = 128;
/// Time a connection has to finish TLS and the cookie challenge.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that has not authenticated yet.
struct Pending {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    session: Option<ActorRef<NodeSessionMessage>>,
    /// A duplicate of the socket's descriptor, to shut the connection down at the deadline
    /// (stopping the session actor alone leaves its reader blocked on the socket).
    socket: Option<std::net::TcpStream>,
}

/// Connections waiting to authenticate, by peer address, and the door's counters.
#[derive(Default)]
pub(crate) struct Door {
    pending: Mutex<HashMap<String, Pending>>,
    refused: AtomicU64,
    accept: Mutex<Option<AbortHandle>>,
}

impl Door {
    /// Accept on `listener` and hand each connection to `server`.
    pub(crate) fn start(
        self: &Arc<Self>,
        listener: TcpListener,
        server: ActorRef<NodeServerMessage>,
        tls: Option<Arc<Tls>>,
    ) {
        let door = self.clone();
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
            loop {
                let (stream, peer_addr) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("transport listener: cannot accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    door.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer_addr, "transport connection refused: too many unauthenticated connections");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok(local_addr) = stream.local_addr() else {
                    continue;
                };
                let (stream, socket) = match dup(stream) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%peer_addr, "transport connection dropped: {e}");
                        continue;
                    }
                };
                let key = peer_addr.to_string();
                if let Ok(mut p) = door.pending.lock() {
                    p.insert(
                        key.clone(),
                        Pending {
                            _permit: Some(permit),
                            session: None,
                            socket: Some(socket),
                        },
                    );
                }
                let (door, server, tls) = (door.clone(), server.clone(), tls.clone());
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
                    let stream = match tls {
                        None => Some(NetworkStream::Raw {
                            peer_addr,
                            local_addr,
                            stream,
                        }),
                        Some(tls) => {
                            match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => Some(NetworkStream::TlsServer {
                                    peer_addr,
                                    local_addr,
                                    stream,
                                }),
                                Ok(Err(e)) => {
                                    tracing::warn!(%peer_addr, "transport TLS handshake failed: {e}");
                                    None
                                }
                                Err(_) => None,
                            }
                        }
                    };
                    match stream {
                        Some(stream) => {
                            let _ = server.cast(NodeServerMessage::ConnectionOpened {
                                stream: Box::new(stream),
                                is_server: true,
                            });
                        }
                        None => {
                            door.refused.fetch_add(1, Ordering::Relaxed);
                            door.forget(&key);
                            return;
                        }
                    }
                    tokio::time::sleep_until(deadline).await;
                    door.expire(&key);
                });
            }
        });
        if let Ok(mut a) = self.accept.lock() {
            *a = Some(task.abort_handle());
        }
    }

    /// A session opened: remember its actor so it can be closed at the deadline. Outgoing
    /// sessions (our dials) get the same deadline, without taking a slot.
    pub(crate) fn opened(
        self: &Arc<Self>,
        peer_addr: &str,
        session: ActorRef<NodeSessionMessage>,
        is_server: bool,
    ) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        match p.get_mut(peer_addr) {
            Some(entry) => entry.session = Some(session),
            None if !is_server => {
                p.insert(
                    peer_addr.to_string(),
                    Pending {
                        _permit: None,
                        session: Some(session),
                        socket: None,
                    },
                );
                drop(p);
                let key = peer_addr.to_string();
                let door = Arc::downgrade(self);
                tokio::spawn(async move {
                    tokio::time::sleep(HANDSHAKE_TIMEOUT).await;
                    if let Some(d) = door.upgrade() {
                        d.expire(&key);
                    }
                });
            }
            None => {}
        }
    }

    /// The session authenticated (or closed): its slot is free.
    pub(crate) fn forget(&self, peer_addr: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(peer_addr);
        }
    }

    /// The deadline passed: close the session if it has still not authenticated.
    fn expire(&self, peer_addr: &str) {
        let entry = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(peer_addr));
        if let Some(entry) = entry {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer_addr, "transport connection closed: no authentication within {HANDSHAKE_TIMEOUT:?}");
            if let Some(s) = entry.socket {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            if let Some(s) = entry.session {
                s.stop(Some("handshake timeout".into()));
            }
        }
    }

    /// Stop accepting.
    pub(crate) fn shutdown(&self) {
        if let Some(a) = self.accept.lock().ok().and_then(|mut a| a.take()) {
            a.abort();
        }
    }

    /// The door's metric families.
    pub(crate) fn metrics_text(&self) -> String {
        let pending = self.pending.lock().map(|p| p.len()).unwrap_or(0);
        crate::metrics::metrics_text(&[
            (
                "draft_transport_connections_refused_total",
                "counter",
                "Actor-transport connections closed before authenticating (over the cap of unauthenticated connections, TLS failure, or handshake timeout).",
                self.refused.load(Ordering::Relaxed),
            ),
            (
                "draft_transport_unauthenticated",
                "gauge",
                "Actor-transport connections waiting to authenticate.",
                pending as u64,
            ),
        ])
    }
}

/// The stream, and a duplicate of its descriptor that can shut the connection down.
fn dup(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let copy = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, copy))
}

/// Listen on `addr` with a deep accept queue, so a burst of connections is accepted (and
/// refused or timed) at once rather than left to the kernel's SYN retries.
pub(crate) fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
