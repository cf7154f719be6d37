//! Running work as a span of the current trace, exported when OTLP export is on.

use super::Node;

impl Node {
    /// Run `work` as a span named `name` of the current trace: a child of the request or message
    /// being handled ([`crate::trace_context`]), current while `work` runs (messages it sends
    /// carry it) and exported when OTLP export is on ([`crate::NodeBuilder::otlp_endpoint`]).
    /// Outside a trace, or with export off, `work` just runs (and `attributes`, the span's
    /// attributes, is not called). The broker's produce is one.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("in-span-doc").without_admin().start().await.unwrap();
    /// let n = node.in_span("produce", || vec![("channel", "orders".to_string())], async { 1 + 1 }).await;
    /// assert_eq!(n, 2);
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn in_span<F: std::future::Future>(
        &self,
        name: &'static str,
        attributes: impl FnOnce() -> Vec<(&'static str, String)>,
        work: F,
    ) -> F::Output {
        let (Some(spans), Some(parent)) = (&self.inner.spans, crate::trace::current()) else {
            return work.await;
        };
        let ctx = parent.child();
        let started = std::time::SystemTime::now();
        let out = crate::trace::scope(ctx, work).await;
        spans.export(crate::otlp::Finished {
            name,
            kind: opentelemetry::trace::SpanKind::Internal,
            ctx,
            parent: Some(parent),
            start: started,
            attributes: attributes()
                .into_iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k, v))
                .collect(),
            error: None,
        });
        out
    }

    /// Handle a message in its trace, for actors that are not spawned through the node (e.g. a
    /// worker put in a supervision spec by hand, whose handler the node does not wrap): when
    /// the message just decoded carried a trace context ([`crate::trace_received`]), `work` runs
    /// as a child span of it named `message` with `actor` (logged, current while it runs,
    /// exported when OTLP export is on). Call it before the handler's first await. For an actor
    /// spawned through the node the node has done this already, and `work` just runs.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = runtime::Node::builder().name("handle-traced-doc").without_admin().start().await.unwrap();
    /// let r: Result<u8, String> = node.handle_traced("me", async { Ok(7) }).await;
    /// assert_eq!(r, Ok(7));
    /// # node.shutdown().await;
    /// # });
    /// ```
    pub async fn handle_traced<T, E: std::fmt::Display>(
        &self,
        actor: &str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        crate::message_span::handle_received(self.inner.spans.as_deref(), actor, work).await
    }
}
