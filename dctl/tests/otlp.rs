//! `--otlp-endpoint`: three real nodes export their spans to an OTLP/gRPC receiver running in
//! this test (tonic, decoding `ExportTraceServiceRequest` with opentelemetry-proto's types).
//! One `dctl send --call` hopping n1 -> n2 -> n3 (two `forward` actors and an echo) yields one
//! trace: n1's admin request, then the three message spans, each the child of the one before,
//! every span under its own node's resource. With the receiver gone the nodes go on serving and
//! say in their logs that an export failed.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, KeyValue},
};

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Got {
    /// The resource's `service.name` and `service.instance.id`.
    service: String,
    instance: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(attrs: &[KeyValue]) -> HashMap<String, String> {
    attrs
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let res = text(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes));
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Got {
                        service: res.get("service.name").cloned().unwrap_or_default(),
                        instance: res.get("service.instance.id").cloned().unwrap_or_default(),
                        name: s.name.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        attributes: text(&s.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The receiver, served on its own thread's runtime until dropped.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let spans = receiver.spans.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("receiver");
            });
        });
        Collector {
            addr,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Stop serving (connections close, the port refuses).
    fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("receiver thread");
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(node: &NodeProc, factory: &str, name: &str, on: &str, args: &str) {
    let out = node.dctl(&["spawn", factory, "--name", name, "--on", on, "--args", args]);
    assert!(out.status.success(), "spawn {name}: {}", stderr(&out));
}

fn message_span<'a>(spans: &'a [Got], trace: &str, actor: &str) -> Option<&'a Got> {
    spans.iter().find(|s| {
        s.trace_id == trace
            && s.name == "message"
            && s.attributes.get("actor").map(String::as_str) == Some(actor)
    })
}

#[test]
fn a_call_through_three_nodes_is_one_exported_trace_whose_spans_chain() {
    let mut collector = Collector::start();
    let url = collector.url();
    let otlp = ["--otlp-endpoint", url.as_str()];
    let n1 = NodeProc::start_with("ot-1", &otlp);
    let n2 = NodeProc::start_with("ot-2", &["--otlp-endpoint", &url, "--seed", &n1.gossip]);
    let n3 = NodeProc::start_with("ot-3", &["--otlp-endpoint", &url, "--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2, &n3], &["ot-1", "ot-2", "ot-3"]);
    spawn(&n1, "echo", "ot-echo", "ot-3", "null");
    spawn(&n1, "forward", "ot-f3", "ot-3", r#"{"to":"ot-echo"}"#);
    spawn(&n1, "forward", "ot-f2", "ot-2", r#"{"to":"ot-f3"}"#);

    let out = n1.dctl(&["send", "ot-f2", r#"{"hop":3}"#, "--call"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"hop":3}"#);

    // n1's span of the CLI's request, then the hops, each the child of the one before.
    let mut chain = None;
    wait_until(
        "the call's four spans reached the receiver",
        Duration::from_secs(20),
        || {
            let spans = collector.spans();
            let Some(http) = spans.iter().find(|s| {
                s.name == "http"
                    && s.attributes.get("url.path").map(String::as_str)
                        == Some("/api/actors/ot-f2/call")
            }) else {
                return false;
            };
            let t = &http.trace_id;
            match (
                message_span(&spans, t, "ot-f2"),
                message_span(&spans, t, "ot-f3"),
                message_span(&spans, t, "ot-echo"),
            ) {
                (Some(f2), Some(f3), Some(echo)) => {
                    chain = Some([http.clone(), f2.clone(), f3.clone(), echo.clone()]);
                    true
                }
                _ => false,
            }
        },
    );
    let [http, f2, f3, echo] = chain.unwrap();
    assert_eq!(http.service, "ot-1", "{http:?}");
    assert_eq!(http.instance, "ot-1");
    assert_eq!(http.attributes.get("http.request.method").unwrap(), "POST");
    assert_eq!(
        http.attributes.get("http.response.status_code").unwrap(),
        "200"
    );
    assert_eq!(
        http.parent_span_id, "",
        "the CLI sent no traceparent: a root"
    );
    assert_eq!(
        (f2.service.as_str(), f2.instance.as_str()),
        ("ot-2", "ot-2")
    );
    assert_eq!(
        (f3.service.as_str(), echo.service.as_str()),
        ("ot-3", "ot-3")
    );
    assert_eq!(
        f2.parent_span_id, http.span_id,
        "n2's hop is the request's child"
    );
    assert_eq!(f3.parent_span_id, f2.span_id, "n3's forward is n2's child");
    assert_eq!(
        echo.parent_span_id, f3.span_id,
        "the echo is the forward's child"
    );
    let ids: std::collections::HashSet<_> = [&http, &f2, &f3, &echo]
        .iter()
        .map(|s| s.span_id.clone())
        .collect();
    assert_eq!(ids.len(), 4, "every hop has a span of its own");

    // A broker produce in a trace is a span of it, child of the request's.
    let (s, b) = http_put(&n2, "/broker/channels/ot-orders/durable");
    assert_eq!(s, 200, "{b}");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = format!("00-{trace}-b7ad6b7169203331-01");
    let (s, b) = common::http(
        &n2.admin,
        "POST",
        "/broker/channels/ot-orders/events",
        &[
            ("traceparent", &parent),
            ("Content-Type", "application/cloudevents+json"),
        ],
        br#"{"specversion":"1.0","id":"e1","source":"test","type":"order"}"#,
    );
    assert_eq!(s, 200, "{b}");
    let mut produce = None;
    wait_until("the produce's spans", Duration::from_secs(20), || {
        let spans = collector.spans();
        let req = spans
            .iter()
            .find(|s| s.trace_id == trace && s.name == "http")
            .cloned();
        let p = spans
            .iter()
            .find(|s| s.trace_id == trace && s.name == "produce")
            .cloned();
        produce = req.zip(p);
        produce.is_some()
    });
    let (req, p) = produce.unwrap();
    assert_eq!(
        req.parent_span_id, "b7ad6b7169203331",
        "our traceparent is its parent"
    );
    assert_eq!(p.parent_span_id, req.span_id);
    assert_eq!(p.service, "ot-2");
    assert_eq!(
        p.attributes.get("messaging.destination.name").unwrap(),
        "ot-orders"
    );

    // The collector goes away: calls still work, and the nodes say the export failed.
    collector.stop();
    for i in 0..3 {
        let out = n1.dctl(&["send", "ot-f2", &format!(r#"{{"after":{i}}}"#), "--call"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), format!(r#"{{"after":{i}}}"#));
    }
    for node in [&n1, &n2, &n3] {
        wait_until(
            &format!("{} logged a failed export", node.name),
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(node.log_path())
                    .map(|l| l.contains("BatchSpanProcessor.ExportError"))
                    .unwrap_or(false)
            },
        );
    }
    let health = http_get(&n3.admin, "/health");
    assert!(health.contains(r#""status":"ok""#), "{health}");
}

#[test]
fn a_bad_otlp_endpoint_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(DCTL)
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .args([
            "node",
            "start",
            "--name",
            "ot-bad",
            "--otlp-endpoint",
            "127.0.0.1:4317",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DCTL_COOKIE", TEST_COOKIE)
        .output()
        .expect("dctl");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("OTLP endpoint '127.0.0.1:4317' is not an http:// or https:// URL"),
        "{err}"
    );
}

fn http_put(node: &NodeProc, path: &str) -> (u16, String) {
    common::http(&node.admin, "PUT", path, &[], b"")
}
