//! Fuzz targets of the broker (run with the unit tests; see the `fuzz` crate for long runs):
//! the CloudEvents validator, the three HTTP modes of a produce request, the broker-to-broker
//! messages, durable-log recovery from a damaged file, and metadata files.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::{
    event::CloudEvent,
    log::{fnv, log_path, Log, LogError},
    metafile, parse_events,
    protocol::{Batch, Request, Response, Run, SharedStr, WireEvent},
};

const EVENT_TOKENS: &[&str] = &[
    "\"specversion\"",
    "\"1.0\"",
    "\"id\"",
    "\"source\"",
    "\"type\"",
    "\"time\"",
    "\"2026-12-02T04:00:00Z\"",
    "\"data\"",
    "\"data_base64\"",
    "\"datacontenttype\"",
    "\"application/json\"",
    "\"dataschema\"",
    "\"subject\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    ":",
    ",",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "1e999",
    "-0",
    "\n",
];

fn event_seeds() -> Vec<String> {
    vec![
        r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#.into(),
        r#"{"specversion":"1.0","id":"o-1","source":"/orders","type":"created","time":"2026-12-02T04:00:00Z","datacontenttype":"application/json","data":{"total":12}}"#.into(),
        r#"{"specversion":"1.0","id":"b","source":"s","type":"t","data_base64":"AAEC","ext1":"x"}"#.into(),
        "{\n \"specversion\": \"1.0\", \"id\": \"2\", \"source\": \"s\", \"type\": \"t\", \"id\": \"3\"\n}".into(),
        r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#.into(),
        r#"{"specversion":"1.0","id":"","source":"s","type":"t","subject":7}"#.into(),
    ]
}

/// The validator: whatever the text, an error or an event that validates again to the same
/// text, has the required attributes and converts to the SDK's event; the text and the parsed
/// JSON value are judged alike.
#[test]
fn fuzz_cloudevent_json() {
    fuzz::Target::new("cloudevent_json")
        .seeds(event_seeds())
        .dict(EVENT_TOKENS)
        .run(|b| {
            let Ok(text) = std::str::from_utf8(b) else {
                return;
            };
            let from_text = CloudEvent::from_json(text);
            if let Ok(ev) = &from_text {
                let again = CloudEvent::from_json(ev.as_json())
                    .unwrap_or_else(|e| panic!("validated event refused on re-reading: {e}"));
                assert_eq!(again.as_json(), ev.as_json());
                assert!(!ev.id().is_empty() && !ev.source().is_empty() && !ev.ty().is_empty());
                ev.to_sdk()
                    .expect("a validated event converts to the SDK's");
            }
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                let from_value = CloudEvent::from_value(v);
                assert_eq!(
                    from_text.is_ok(),
                    from_value.is_ok(),
                    "text: {from_text:?}, value: {from_value:?}"
                );
            }
        });
}

/// Split an input into a content type (first line), `name: value` headers (until an empty
/// line) and a body.
fn request(b: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut rest = b;
    let mut first = true;
    while let Some(nl) = rest.iter().position(|c| *c == b'\n') {
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        if line.is_empty() {
            break;
        }
        let (name, value) = if first {
            (&b"content-type"[..], line)
        } else {
            match line.iter().position(|c| *c == b':') {
                Some(c) => (&line[..c], line[c + 1..].trim_ascii_start()),
                None => continue,
            }
        };
        first = false;
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    (headers, rest)
}

/// A produce request in structured, batch or binary mode: an error or events that all
/// validate again.
#[test]
fn fuzz_http_events() {
    let ev = event_seeds();
    let seeds = vec![
        format!("application/cloudevents+json\n\n{}", ev[1]),
        format!("application/cloudevents-batch+json\n\n[{},{}]", ev[0], ev[2]),
        "application/json\nce-specversion: 1.0\nce-id: 9\nce-source: s\nce-type: t\n\n{\"a\":1}"
            .into(),
        "text/plain; charset=utf-8\nce-specversion: 1.0\nce-id: %41\nce-source: s\nce-type: t\n\nhi"
            .into(),
        "application/octet-stream\nce-specversion: 1.0\nce-id: 1\nce-source: s\nce-type: t\nce-time: 2026-12-02T04:00:00Z\n\n\x00\x01"
            .into(),
    ];
    let mut dict: Vec<&str> = EVENT_TOKENS.to_vec();
    dict.extend([
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "\nce-specversion: 1.0",
        "\nce-id: ",
        "\nce-time: ",
        "\nce-data_base64: ",
        "%",
        "%ff",
        "text/",
        "+json",
        ";",
    ]);
    fuzz::Target::new("http_events")
        .seeds(seeds)
        .dict(dict)
        .run(|b| {
            let (headers, body) = request(b);
            if let Ok(events) = parse_events(&headers, body) {
                for e in events {
                    CloudEvent::from_json(e.as_json())
                        .unwrap_or_else(|err| panic!("accepted event refused again: {err}"));
                }
            }
        });
}

fn batch() -> Batch {
    Batch {
        from: "n1".into(),
        runs: vec![
            Run {
                channel: SharedStr("orders".into()),
                events: vec![WireEvent {
                    event: SharedStr(r#"{"id":"1"}"#.into()),
                    offset: Some(300),
                    broadcast: true,
                    groups: vec!["g".into(), "h".into()],
                    hops: 1,
                }],
            },
            Run {
                channel: SharedStr("audit".into()),
                events: vec![],
            },
        ],
    }
}

/// Requests and responses between brokers: an error, or a value that encodes and decodes back
/// to itself.
#[test]
fn fuzz_broker_messages() {
    let requests = [
        Request::Deliver(batch()),
        Request::Ack {
            node: "n2".into(),
            batches: 1 << 40,
        },
        Request::Append {
            channel: "c".into(),
            events: vec!["{}".into(), "é".into()],
        },
        Request::Read {
            channel: "c".into(),
            from: 251,
            max: u64::MAX,
        },
        Request::Commit {
            channel: "c".into(),
            group: "g".into(),
            next: 65536,
        },
        Request::Committed {
            channel: "c".into(),
            group: "g".into(),
        },
        Request::Groups {
            channel: "c".into(),
        },
        Request::Attach(crate::protocol::tests::node_interest()),
        Request::Interest(crate::protocol::tests::node_interest()),
    ];
    let responses = [
        Response::Appended(7),
        Response::Records(vec![(0, "{}".into()), (1 << 33, "x".into())]),
        Response::Committed(None),
        Response::Committed(Some(3)),
        Response::Groups {
            head: 1 << 40,
            committed: vec![("g".into(), 3)],
        },
        Response::Attached { head: 1 << 40 },
        Response::Failed("no".into()),
    ];
    let mut seeds: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| actors::codec::encode(r).expect("seed encodes"))
        .collect();
    seeds.extend(
        responses
            .iter()
            .map(|r| actors::codec::encode(r).expect("seed encodes")),
    );
    fuzz::Target::new("broker_messages").seeds(seeds).run(|b| {
        if let Ok(r) = Request::decode(b) {
            let again = actors::codec::encode(&r).expect("a decoded request encodes");
            assert_eq!(
                Request::decode(&again).expect("re-encoded request decodes"),
                r
            );
        }
        if let Ok(r) = Response::decode(b) {
            let again = actors::codec::encode(&r).expect("a decoded response encodes");
            assert_eq!(
                Response::decode(&again).expect("re-encoded response decodes"),
                r
            );
        }
    });
}

fn record(payload: &[u8]) -> Vec<u8> {
    crate::log::record(payload)
}

/// The records at the start of `b` that check out (a reference parser for the log format),
/// and where they end.
fn good_prefix(b: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(head) = b.get(pos..pos + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match b.get(pos + 8..pos + 8 + len) {
            Some(p) if len > 0 && fnv(p) == sum => out.push(p),
            _ => break,
        }
        pos += 8 + len;
    }
    (out, pos)
}

/// Opening a durable log whatever its file holds: it opens with exactly the records at the
/// start that check out (the file cut just after them: a torn tail dropped), or it refuses
/// naming the first bad record's offset and byte, and leaves the file as it was.
#[test]
fn fuzz_durable_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = log_path(dir.path(), "c");
    let three: Vec<u8> = [&b"{\"id\":\"1\"}"[..], b"{}", "\"é\"".as_bytes()]
        .iter()
        .flat_map(|p| record(p))
        .collect();
    let mut torn = three.clone();
    torn.extend(&record(b"{\"id\":\"4\"}")[..11]);
    let mut zeros = three.clone();
    zeros.extend([5, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0]);
    let mut bad_then_good = record(b"xyz");
    bad_then_good[9] ^= 1;
    bad_then_good.extend(&three);
    fuzz::Target::new("durable_log")
        .seeds([three, torn, zeros, bad_then_good, vec![]])
        .run(|b| {
            std::fs::write(&path, b).expect("write the log");
            let (records, end) = good_prefix(b);
            match Log::open(dir.path(), "c") {
                Ok(log) => {
                    assert_eq!(log.len(), records.len() as u64);
                    let on_disk = std::fs::read(&path).expect("read the log");
                    assert_eq!(&on_disk[..], &b[..end], "only a torn tail is cut");
                    for (i, want) in records.iter().enumerate() {
                        match (log.read(i as u64, 1), std::str::from_utf8(want)) {
                            (Ok(got), Ok(text)) => assert_eq!(got, vec![(i as u64, text.into())]),
                            (Err(LogError::Io { .. }), Err(_)) => {}
                            (got, want) => panic!("record {i}: {got:?}, want {want:?}"),
                        }
                    }
                }
                Err(LogError::Corrupt {
                    offset,
                    byte,
                    after,
                    ..
                }) => {
                    assert_eq!((offset, byte), (records.len() as u64, end as u64));
                    assert_eq!(after, (b.len() - end) as u64);
                    let on_disk = std::fs::read(&path).expect("read the log");
                    assert_eq!(&on_disk[..], b, "a refused log is left as it is");
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        });
}

/// A metadata file's contents: an error, or a value that writes back to a file that reads the
/// same.
#[test]
fn fuzz_metafile() {
    let groups: BTreeMap<String, u64> = [("g".to_string(), 3), ("h".into(), 1 << 40)].into();
    let seeds = [
        metafile::encode(&groups).expect("encode"),
        metafile::encode(&BTreeMap::<String, u64>::new()).expect("encode"),
        br#"{"g":1}"#.to_vec(),
    ];
    fuzz::Target::new("metafile")
        .seeds(seeds)
        .dict(["draft-meta 1 sha256:", "\n", "{", "}", "\"g\"", ":"])
        .run(|b| {
            if let Ok(v) = metafile::decode::<BTreeMap<String, u64>>(b) {
                let again = metafile::encode(&v).expect("a decoded value encodes");
                assert_eq!(metafile::decode::<BTreeMap<String, u64>>(&again), Ok(v));
            }
        });
}
