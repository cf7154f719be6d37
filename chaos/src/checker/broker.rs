//! The broker checker: producers with unique event ids, consumers on several nodes.
//!
//! Records (values are JSON objects):
//! - `produce` `{channel, id, producer, seq, durable}`: `ok` = acknowledged;
//! - `subscribe` `{channel, consumer, kind, node}` (`kind`: `broadcast`, `group`, `replay`),
//!   `ok` once the stream is open; `disconnect` `{consumer}` when it broke;
//! - `recv` `{channel, id, consumer, kind, group?}`, one per delivery, in delivery order;
//! - `final-read` `{channel, node}` → `ok` `{ids: [...]}`: a durable channel replayed from the
//!   beginning on each node after the heal.
//!
//! Anomalies: `duplicate` (an id twice in one consumer's stream or final read, or given to two
//! members of one queue group), `reordered` (of two events of one producer, the one whose produce
//! was acknowledged before the other was even sent arrives second), `unexpected` (an id never
//! produced), `lost` (durable: an acknowledged event missing from a final read; plain: missing
//! from a consumer outside every fault window and reconnection gap), `divergent` (two final reads
//! of one durable channel differ). Plain-channel loss inside a fault window or while the consumer
//! was reconnecting is documented behaviour: it is counted in the notes, not an anomaly.
//!
//! ```
//! use chaos::checker::broker::check;
//! assert!(check(&[]).anomalies.is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::{fault_windows, Report};
use crate::history::{pair, Completed, Op, OpType};

/// How long after a fault is healed (or a consumer reconnects) plain-channel loss still counts
/// as caused by it: failure detection, gossip of interest and re-dialing take a few seconds.
pub const SETTLE_NS: u64 = 5_000_000_000;

struct Produce {
    channel: String,
    producer: String,
    seq: i64,
    durable: bool,
    kind: OpType,
    invoke: u64,
    complete: u64,
    index: usize,
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

/// Check a broker history.
pub fn check(ops: &[Op]) -> Report {
    let mut r = Report::new("broker");
    let done = pair(ops);
    let mut produced: HashMap<String, Produce> = HashMap::new();
    for c in done.iter().filter(|c| c.f == "produce") {
        let v = &c.invoke_value;
        produced.insert(
            s(v, "id"),
            Produce {
                channel: s(v, "channel"),
                producer: s(v, "producer"),
                seq: v["seq"].as_i64().unwrap_or(0),
                durable: v["durable"].as_bool().unwrap_or(false),
                kind: c.kind,
                invoke: c.invoke_time,
                complete: c.complete_time,
                index: c.index,
            },
        );
    }
    r.ops = produced.len();

    // Consumer streams, in delivery order.
    let mut streams: BTreeMap<String, Vec<&Completed>> = BTreeMap::new();
    let mut group_of: HashMap<String, (String, String)> = HashMap::new();
    for c in done
        .iter()
        .filter(|c| c.f == "recv" && c.kind == OpType::Ok)
    {
        let consumer = s(&c.invoke_value, "consumer");
        if let Some(g) = c.invoke_value["group"].as_str() {
            group_of.insert(
                consumer.clone(),
                (s(&c.invoke_value, "channel"), g.to_string()),
            );
        }
        streams.entry(consumer).or_default().push(c);
    }
    let mut delivered_recv = 0u64;
    for (consumer, recvs) in &streams {
        delivered_recv += recvs.len() as u64;
        let ids: Vec<(String, usize)> = recvs
            .iter()
            .map(|c| (s(&c.invoke_value, "id"), c.index))
            .collect();
        stream_checks(&mut r, &produced, &format!("consumer {consumer}"), &ids);
    }
    r.notes.push(("deliveries".into(), delivered_recv));

    // Queue groups: each event to one member.
    let mut by_group: BTreeMap<(String, String), HashMap<String, (String, usize)>> =
        BTreeMap::new();
    for (consumer, recvs) in &streams {
        let Some(g) = group_of.get(consumer) else {
            continue;
        };
        let seen = by_group.entry(g.clone()).or_default();
        for c in recvs {
            let id = s(&c.invoke_value, "id");
            if let Some((other, i)) = seen.get(&id) {
                if other != consumer {
                    r.anomaly(
                        "duplicate",
                        format!(
                            "event {id} given to two members of group {}: {other} and {consumer}",
                            g.1
                        ),
                        vec![*i, c.index],
                    );
                }
            } else {
                seen.insert(id, (consumer.clone(), c.index));
            }
        }
    }

    // Durable channels: the final reads.
    let mut finals: BTreeMap<String, Vec<(String, Vec<String>, usize)>> = BTreeMap::new();
    for c in done.iter().filter(|c| c.f == "final-read") {
        let channel = s(&c.invoke_value, "channel");
        let node = s(&c.invoke_value, "node");
        if c.kind != OpType::Ok {
            r.anomaly(
                "no-final-read",
                format!("final read of durable channel {channel} on {node} failed"),
                vec![c.index],
            );
            continue;
        }
        let ids: Vec<String> = c.value["ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let pairs: Vec<(String, usize)> = ids.iter().map(|i| (i.clone(), c.index)).collect();
        stream_checks(
            &mut r,
            &produced,
            &format!("final read of {channel} on {node}"),
            &pairs,
        );
        let present: HashSet<&String> = ids.iter().collect();
        let mut lost: Vec<&Produce> = produced
            .iter()
            .filter(|(id, p)| p.channel == channel && p.kind == OpType::Ok && !present.contains(id))
            .map(|(_, p)| p)
            .collect();
        lost.sort_by_key(|p| p.index);
        for p in lost {
            r.anomaly(
                "lost",
                format!(
                    "acknowledged event {}#{} (produce at {}) missing from the final read of durable {channel} on {node}",
                    p.producer, p.seq, p.index
                ),
                vec![p.index, c.index],
            );
        }
        finals
            .entry(channel)
            .or_default()
            .push((node, ids, c.index));
    }
    for (channel, reads) in &finals {
        if let Some((n0, first, i0)) = reads.first() {
            for (n, ids, i) in reads.iter().skip(1) {
                if ids != first {
                    r.anomaly(
                        "divergent",
                        format!("durable {channel}: the log read on {n0} ({} events) differs from the one on {n} ({} events)", first.len(), ids.len()),
                        vec![*i0, *i],
                    );
                }
            }
        }
    }
    plain_loss(&mut r, ops, &done, &produced, &streams, &group_of);
    r
}

/// Duplicates, unknown ids and per-producer order in one stream of ids.
fn stream_checks(
    r: &mut Report,
    produced: &HashMap<String, Produce>,
    what: &str,
    ids: &[(String, usize)],
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    // Per producer: the event with the highest seq seen so far.
    let mut latest: HashMap<&str, &Produce> = HashMap::new();
    for (id, index) in ids {
        if let Some(first) = seen.insert(id.as_str(), *index) {
            r.anomaly(
                "duplicate",
                format!("event {id} twice in {what}"),
                vec![first, *index],
            );
            continue;
        }
        let Some(p) = produced.get(id) else {
            r.anomaly(
                "unexpected",
                format!("{what} got event {id}, which was never produced"),
                vec![*index],
            );
            continue;
        };
        match latest.get(p.producer.as_str()) {
            Some(prev) if prev.seq > p.seq => {
                if p.kind == OpType::Ok && p.complete < prev.invoke {
                    r.anomaly(
                        "reordered",
                        format!(
                            "{what}: {}#{} arrived after {}#{}, though it was acknowledged before that one was sent",
                            p.producer, p.seq, prev.producer, prev.seq
                        ),
                        vec![p.index, prev.index, *index],
                    );
                }
            }
            _ => {
                latest.insert(p.producer.as_str(), p);
            }
        }
    }
}

/// Plain-channel loss per broadcast consumer and per group: counted, and an anomaly only
/// outside fault windows and reconnection gaps.
fn plain_loss(
    r: &mut Report,
    ops: &[Op],
    done: &[Completed],
    produced: &HashMap<String, Produce>,
    streams: &BTreeMap<String, Vec<&Completed>>,
    group_of: &HashMap<String, (String, String)>,
) {
    let windows = fault_windows(ops);
    // Gaps per consumer: from a disconnect to SETTLE after the next subscribe; and the start.
    let mut gaps: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut subs: BTreeMap<String, (String, String, u64)> = BTreeMap::new();
    let mut open_gap: HashMap<String, u64> = HashMap::new();
    for c in done {
        let consumer = s(&c.invoke_value, "consumer");
        match (c.f.as_str(), c.kind) {
            ("subscribe", OpType::Ok) => {
                let start = open_gap.remove(&consumer).unwrap_or(c.invoke_time);
                gaps.entry(consumer.clone())
                    .or_default()
                    .push((start, c.complete_time.saturating_add(SETTLE_NS)));
                subs.entry(consumer).or_insert((
                    s(&c.invoke_value, "channel"),
                    s(&c.invoke_value, "kind"),
                    c.invoke_time,
                ));
            }
            ("subscribe", _) | ("disconnect", _) => {
                open_gap.entry(consumer).or_insert(c.invoke_time);
            }
            _ => {}
        }
    }
    for (consumer, t) in open_gap {
        gaps.entry(consumer).or_default().push((t, u64::MAX));
    }
    let explained = |consumer: &str, p: &Produce| {
        windows
            .iter()
            .any(|w| p.complete >= w.start && p.invoke <= w.end.saturating_add(SETTLE_NS))
            || gaps
                .get(consumer)
                .is_some_and(|g| g.iter().any(|(a, b)| p.complete >= *a && p.invoke <= *b))
    };
    let mut counted = 0u64;
    let mut report_lost = |r: &mut Report, who: &str, p: &Produce, explained: bool| {
        if explained {
            counted += 1;
        } else {
            r.anomaly(
                "lost",
                format!(
                    "acknowledged plain event {}#{} (produce at {}) never reached {who}, outside any fault or reconnection",
                    p.producer, p.seq, p.index
                ),
                vec![p.index],
            );
        }
    };
    let mut groups_done: BTreeSet<(String, String)> = BTreeSet::new();
    for (consumer, (channel, kind, _)) in &subs {
        let got: HashSet<String> = match kind.as_str() {
            "broadcast" => streams
                .get(consumer)
                .map(|v| v.iter().map(|c| s(&c.invoke_value, "id")).collect())
                .unwrap_or_default(),
            "group" => {
                let Some(g) = group_of.get(consumer) else {
                    continue;
                };
                if !groups_done.insert(g.clone()) {
                    continue;
                }
                streams
                    .iter()
                    .filter(|(c, _)| group_of.get(*c) == Some(g))
                    .flat_map(|(_, v)| v.iter().map(|c| s(&c.invoke_value, "id")))
                    .collect()
            }
            _ => continue,
        };
        let who = if kind == "group" {
            format!("group of {consumer}")
        } else {
            consumer.clone()
        };
        let mut missing: Vec<&Produce> = produced
            .iter()
            .filter(|(id, p)| {
                !p.durable && &p.channel == channel && p.kind == OpType::Ok && !got.contains(*id)
            })
            .map(|(_, p)| p)
            .collect();
        missing.sort_by_key(|p| p.index);
        for p in missing {
            // A group's loss is explained by a gap of any of its members.
            let members: Vec<&String> = if kind == "group" {
                subs.keys()
                    .filter(|c| group_of.get(*c) == group_of.get(consumer))
                    .collect()
            } else {
                vec![consumer]
            };
            let ok = members.iter().any(|m| explained(m, p));
            report_lost(r, &who, p, ok);
        }
    }
    r.notes.push((
        "plain events lost during faults (documented)".into(),
        counted,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Process};
    use serde_json::json;

    fn produce(h: &History, p: u64, channel: &str, producer: &str, seq: i64, kind: OpType) {
        let v = json!({"channel": channel, "id": format!("{producer}-{seq}"), "producer": producer, "seq": seq, "durable": channel.starts_with('d')});
        h.invoke(Process::Client(p), "produce", v.clone(), None);
        h.complete(Process::Client(p), kind, "produce", v, None);
    }

    fn subscribe(h: &History, p: u64, channel: &str, consumer: &str, kind: &str) {
        let v = json!({"channel": channel, "consumer": consumer, "kind": kind});
        h.invoke(Process::Client(p), "subscribe", v.clone(), None);
        h.complete(Process::Client(p), OpType::Ok, "subscribe", v, None);
    }

    fn recv(h: &History, p: u64, channel: &str, consumer: &str, id: &str, group: Option<&str>) {
        let mut v = json!({"channel": channel, "consumer": consumer, "id": id});
        if let Some(g) = group {
            v["group"] = json!(g);
        }
        h.invoke(Process::Client(p), "recv", v.clone(), None);
        h.complete(Process::Client(p), OpType::Ok, "recv", v, None);
    }

    fn final_read(h: &History, p: u64, channel: &str, node: &str, ids: &[&str]) {
        let v = json!({"channel": channel, "node": node});
        h.invoke(Process::Client(p), "final-read", v, None);
        h.complete(
            Process::Client(p),
            OpType::Ok,
            "final-read",
            json!({"ids": ids}),
            None,
        );
    }

    fn kinds(r: &Report) -> Vec<&str> {
        r.anomalies.iter().map(|a| a.kind.as_str()).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let h = History::new();
        subscribe(&h, 10, "plain", "c1", "broadcast");
        subscribe(&h, 11, "plain", "g1", "group");
        subscribe(&h, 12, "plain", "g2", "group");
        produce(&h, 0, "plain", "p0", 0, OpType::Ok);
        produce(&h, 0, "plain", "p0", 1, OpType::Ok);
        produce(&h, 1, "durable", "p1", 0, OpType::Ok);
        produce(&h, 1, "durable", "p1", 1, OpType::Info);
        recv(&h, 10, "plain", "c1", "p0-0", None);
        recv(&h, 10, "plain", "c1", "p0-1", None);
        recv(&h, 11, "plain", "g1", "p0-0", Some("g"));
        recv(&h, 12, "plain", "g2", "p0-1", Some("g"));
        final_read(&h, 20, "durable", "n1", &["p1-0", "p1-1"]);
        final_read(&h, 21, "durable", "n2", &["p1-0", "p1-1"]);
        let r = check(&h.snapshot());
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
    }

    #[test]
    fn a_reordered_stream_is_reported() {
        let h = History::new();
        subscribe(&h, 10, "plain", "c1", "broadcast");
        produce(&h, 0, "plain", "p0", 0, OpType::Ok);
        produce(&h, 0, "plain", "p0", 1, OpType::Ok);
        recv(&h, 10, "plain", "c1", "p0-1", None);
        recv(&h, 10, "plain", "c1", "p0-0", None);
        assert_eq!(kinds(&check(&h.snapshot())), vec!["reordered"]);
    }

    #[test]
    fn concurrent_produces_of_one_producer_may_arrive_in_either_order() {
        // seq 0 timed out (info) and seq 1 was sent after: no order is promised between them.
        let h = History::new();
        subscribe(&h, 10, "plain", "c1", "broadcast");
        produce(&h, 0, "plain", "p0", 0, OpType::Info);
        produce(&h, 1, "plain", "p0", 1, OpType::Ok);
        recv(&h, 10, "plain", "c1", "p0-1", None);
        recv(&h, 10, "plain", "c1", "p0-0", None);
        assert!(check(&h.snapshot()).anomalies.is_empty());
    }

    #[test]
    fn durable_loss_duplicates_and_divergence_are_reported() {
        let h = History::new();
        produce(&h, 0, "durable", "p0", 0, OpType::Ok);
        produce(&h, 0, "durable", "p0", 1, OpType::Ok);
        final_read(&h, 20, "durable", "n1", &["p0-0", "p0-1", "p0-1"]);
        final_read(&h, 21, "durable", "n2", &["p0-0"]);
        let r = check(&h.snapshot());
        assert_eq!(kinds(&r), vec!["duplicate", "lost", "divergent"]);
        assert!(r.anomalies[1].detail.contains("p0#1"), "{:?}", r.anomalies);
    }

    #[test]
    fn a_queue_group_member_getting_anothers_event_is_a_duplicate() {
        let h = History::new();
        subscribe(&h, 11, "plain", "g1", "group");
        subscribe(&h, 12, "plain", "g2", "group");
        produce(&h, 0, "plain", "p0", 0, OpType::Ok);
        recv(&h, 11, "plain", "g1", "p0-0", Some("g"));
        recv(&h, 12, "plain", "g2", "p0-0", Some("g"));
        assert_eq!(kinds(&check(&h.snapshot())), vec!["duplicate"]);
    }

    #[test]
    fn plain_loss_is_counted_during_a_fault_and_reported_outside() {
        let h = History::new();
        subscribe(&h, 10, "plain", "c1", "broadcast");
        // Wait out the subscribe's settle time by backdating nothing: record a fault window.
        h.invoke(Process::nemesis(), "kill", json!({"nodes": ["n2"]}), None);
        produce(&h, 0, "plain", "p0", 0, OpType::Ok);
        h.complete(Process::nemesis(), OpType::Info, "heal", json!({}), None);
        let r = check(&h.snapshot());
        assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
        assert!(r
            .notes
            .contains(&("plain events lost during faults (documented)".into(), 1)));

        // No fault, and the subscription settled long before the produce: a real loss.
        let ops = vec![
            op(
                0,
                OpType::Invoke,
                10,
                "subscribe",
                json!({"channel": "plain", "consumer": "c1", "kind": "broadcast"}),
            ),
            op(1, OpType::Ok, 10, "subscribe", json!({})),
            op(
                2,
                OpType::Invoke,
                0,
                "produce",
                json!({"channel": "plain", "id": "p0-0", "producer": "p0", "seq": 0}),
            ),
            op(3, OpType::Ok, 0, "produce", json!({})),
        ];
        assert_eq!(kinds(&check(&ops)), vec!["lost"]);
    }

    fn op(i: usize, kind: OpType, p: u64, f: &str, value: Value) -> Op {
        Op {
            index: i,
            kind,
            process: Process::Client(p),
            time: i as u64 * 10 * SETTLE_NS,
            f: f.into(),
            value,
            node: None,
            error: None,
        }
    }
}
