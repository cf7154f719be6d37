//! Trace context across nodes: a W3C `traceparent` (`00-TRACEID-SPANID-FLAGS`) that follows one
//! request through the admin API, the messages it causes on every node, and CloudEvents.
//!
//! * HTTP: the admin API reads a request's `traceparent` header (or starts a trace), serves the
//!   request in a `tracing` span `http{trace_id, span_id, ...}` and answers with its own
//!   `traceparent` header.
//! * Messages: while a traced request or message is handled, the context is the task's
//!   [`current`]; a JSON message sent then carries it as ractor's message `metadata`, which the
//!   lane carries (`CAST_M` / `CALL_M` frames) and ractor_cluster's session path carries in its
//!   own envelope. The receiving node's actor wrapper handles the message in a span
//!   `message{trace_id, span_id, parent_span_id, actor}` and logs one line there, so a request
//!   that hops through three nodes leaves lines with one trace id in the three nodes' logs.
//! * CloudEvents: the broker's HTTP binding sets the `traceparent` extension from the context.

use std::{cell::Cell, fmt};

/// A W3C trace context.
///
/// ```
/// use runtime::TraceContext;
/// let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// let child = t.child();
/// assert_eq!(child.trace_id, t.trace_id);
/// assert_ne!(child.span_id, t.span_id);
/// assert!(child.to_string().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace (one per request, whatever the hops).
    pub trace_id: [u8; 16],
    /// This hop's span.
    pub span_id: [u8; 8],
    /// The W3C flags (bit 0: sampled).
    pub flags: u8,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // An all-zero id is invalid in W3C: retry (getrandom failing leaves zeros, then a
    // counter-based fallback keeps ids distinct).
    if getrandom::fill(&mut b).is_err() || b.iter().all(|x| *x == 0) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = n[i % 8] ^ (i as u8).wrapping_mul(31);
        }
        b[N - 1] |= 1;
    }
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TraceContext {
    /// A new trace (random ids, sampled).
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: random(),
            span_id: random(),
            flags: 1,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random(),
            ..*self
        }
    }

    /// Parse a `traceparent` header value (version 00; later versions are read by their first
    /// four fields, as W3C says). `None` for anything malformed or with all-zero ids.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut parts = s.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || unhex::<1>(version).is_none() {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let span_id = unhex::<8>(span)?;
        let flags = unhex::<1>(flags)?[0];
        if trace_id.iter().all(|b| *b == 0) || span_id.iter().all(|b| *b == 0) {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

thread_local! {
    /// The context of a message just decoded on this thread, for the actor wrapper that handles
    /// it next (decoding and the start of handling run back to back on one thread, in ractor's
    /// actor loop).
    static RECEIVED: Cell<Option<TraceContext>> = const { Cell::new(None) };
}

/// The trace context of the request or message being handled by this task, if any.
///
/// ```
/// assert!(runtime::trace_context().is_none());
/// ```
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Run `fut` in the trace `ctx` (its [`current`] context): messages it sends through the node
/// carry `ctx`, so their handlers, on any node, continue that trace. For a request that came
/// with a `traceparent` over a protocol of the user's own; the admin API does this itself.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let t = runtime::TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// let seen = runtime::in_trace(t, async { runtime::trace_context() }).await;
/// assert_eq!(seen, Some(t));
/// # });
/// ```
pub async fn in_trace<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    scope(ctx, fut).await
}

/// Run `fut` with `ctx` as its [`current`] context.
pub(crate) async fn scope<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The message metadata to send now: the current context as `traceparent` bytes, `None`
/// outside a trace. A hand-written [`ractor::Message::serialize`] puts it in the
/// `SerializedMessage`'s `metadata` (as [`crate::JsonMsg`] and chassis' typed envelopes do), and
/// its `deserialize` hands it to [`received`].
///
/// ```
/// assert_eq!(runtime::trace_metadata(), None);
/// ```
pub fn outgoing() -> Option<Vec<u8>> {
    current().map(|c| c.to_string().into_bytes())
}

/// A message was decoded with this metadata: remember its context for the handler that runs
/// next on this thread (the node's actor wrapper, or [`crate::Node::handle_traced`]). Call it
/// in every hand-written `deserialize` of a message type that carries [`outgoing`]'s metadata,
/// with `None` too (so a stale context is never taken).
///
/// ```
/// runtime::trace_received(Some(b"not a traceparent"));
/// ```
pub fn received(metadata: Option<&[u8]>) {
    let ctx = metadata
        .and_then(|m| std::str::from_utf8(m).ok())
        .and_then(TraceContext::parse);
    RECEIVED.with(|r| r.set(ctx));
}

/// Take the context of the message about to be handled on this thread (clearing it). Every
/// actor taking [`crate::JsonMsg`] must call this first (the node's actor wrapper does; so does
/// the `gossip-keys` actor), or a stale context could be taken by the next handler.
pub(crate) fn take_received() -> Option<TraceContext> {
    RECEIVED.with(Cell::take)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(s).unwrap();
        assert_eq!(t.to_string(), s);
        assert_eq!(t.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // a later version may add fields
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn roots_and_children_get_fresh_ids() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id, b.trace_id);
        let c = a.child();
        assert_eq!(c.trace_id, a.trace_id);
        assert_ne!(c.span_id, a.span_id);
        assert_eq!(TraceContext::parse(&c.to_string()), Some(c));
    }

    #[tokio::test]
    async fn the_context_is_the_tasks_while_in_scope() {
        assert_eq!(current(), None);
        let t = TraceContext::new_root();
        let seen = scope(t, async {
            tokio::task::yield_now().await;
            (current(), outgoing())
        })
        .await;
        assert_eq!(seen.0, Some(t));
        assert_eq!(seen.1, Some(t.to_string().into_bytes()));
        assert_eq!(current(), None);
    }

    #[test]
    fn a_received_context_is_taken_once() {
        let t = TraceContext::new_root();
        received(Some(t.to_string().as_bytes()));
        assert_eq!(take_received(), Some(t));
        assert_eq!(take_received(), None);
        received(Some(b"garbage"));
        assert_eq!(take_received(), None);
    }
}
