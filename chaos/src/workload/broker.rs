//! `broker`: a plain channel (`chaos-plain`) with a broadcast consumer on every node and a queue
//! group (`g`) with members on the last two nodes, fed by one producer per node (each through its
//! own node, so per-producer order is promised); a durable channel (`chaos-durable`, home `n1`)
//! fed by two producers through random nodes, read live by replaying consumers on two nodes
//! (reconnecting from the next offset) and, after the heal, replayed from the beginning on every
//! node. Event ids are `<producer>-<seq>`; values as [`crate::checker::broker`] expects.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::{complete, think, write_kind, Ctx, Proc, MAX_OPS_PER_CLIENT};
use crate::history::{OpType, Process};

/// The plain channel.
pub const PLAIN: &str = "chaos-plain";
/// The durable channel.
pub const DURABLE: &str = "chaos-durable";

/// A stream that sends nothing (not even its 1 s keep-alive) for this long is taken as broken.
const STALL: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Consumer {
    name: String,
    node: usize,
    channel: &'static str,
    kind: &'static str,
    group: Option<&'static str>,
}

/// One parsed SSE event: (event type, data, id).
fn sse_events(buf: &mut String) -> Vec<(String, String, Option<u64>)> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut ev, mut data, mut id) = (String::from("message"), String::new(), None);
        let mut any = false;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                ev = v.trim().to_string();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
                any = true;
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            }
        }
        if any {
            out.push((ev, data, id));
        }
    }
    out
}

async fn consume(
    ctx: Ctx,
    c: Consumer,
    pid: u64,
    stop: Arc<AtomicBool>,
    last_recv: Arc<std::sync::Mutex<Instant>>,
) {
    let h = &ctx.history;
    let proc = Process::Client(pid);
    let admin = ctx.nodes[c.node].1.clone();
    let mut next_offset: Option<u64> = None;
    let sub_value = json!({"channel": c.channel, "consumer": c.name, "kind": c.kind, "node": ctx.nodes[c.node].0});
    // Bounded by the stop flag (set after the drain) and a reconnection count.
    for _attempt in 0..10_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut url = format!(
            "http://{admin}/broker/channels/{}/events?policy=block",
            c.channel
        );
        if let Some(g) = c.group {
            url.push_str(&format!("&group={g}"));
        }
        if c.kind == "replay" {
            match next_offset {
                Some(o) => url.push_str(&format!("&from={o}")),
                None => url.push_str("&from=beginning"),
            }
        }
        h.invoke(
            proc.clone(),
            "subscribe",
            sub_value.clone(),
            Some(&ctx.nodes[c.node].0),
        );
        // A stream has no overall timeout: each chunk is awaited with STALL instead.
        let resp = tokio::time::timeout(STALL, reqwest::Client::new().get(&url).send()).await;
        let mut resp = match resp {
            Ok(Ok(r)) if r.status().is_success() => r,
            Ok(Ok(r)) => {
                h.complete(
                    proc.clone(),
                    OpType::Fail,
                    "subscribe",
                    sub_value.clone(),
                    Some(format!("HTTP {}", r.status())),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Ok(Err(e)) => {
                h.complete(
                    proc.clone(),
                    OpType::Fail,
                    "subscribe",
                    sub_value.clone(),
                    Some(e.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                h.complete(
                    proc.clone(),
                    OpType::Fail,
                    "subscribe",
                    sub_value.clone(),
                    Some("no answer".into()),
                );
                continue;
            }
        };
        let mut buf = String::new();
        let mut subscribed = false;
        let reason = loop {
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            match tokio::time::timeout(STALL, resp.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    buf.push_str(&String::from_utf8_lossy(&bytes));
                    for (ev, data, id) in sse_events(&mut buf) {
                        if ev == "subscribed" && !subscribed {
                            subscribed = true;
                            h.complete(
                                proc.clone(),
                                OpType::Ok,
                                "subscribe",
                                sub_value.clone(),
                                None,
                            );
                            continue;
                        }
                        if ev != "message" {
                            continue;
                        }
                        let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                        let mut rv = json!({"channel": c.channel, "consumer": c.name, "kind": c.kind,
                                            "id": v["id"].as_str().unwrap_or("?")});
                        if let Some(g) = c.group {
                            rv["group"] = json!(g);
                        }
                        if let Some(o) = id {
                            rv["offset"] = json!(o);
                            next_offset = Some(o + 1);
                        }
                        h.invoke(proc.clone(), "recv", rv.clone(), Some(&ctx.nodes[c.node].0));
                        h.complete(proc.clone(), OpType::Ok, "recv", rv, None);
                        *last_recv.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    }
                }
                Ok(Ok(None)) => break Some("stream ended".to_string()),
                Ok(Err(e)) => break Some(e.to_string()),
                Err(_) => break Some(format!("nothing for {STALL:?}")),
            }
        };
        if !subscribed {
            h.complete(
                proc.clone(),
                OpType::Fail,
                "subscribe",
                sub_value.clone(),
                reason.clone(),
            );
        }
        if let Some(r) = reason {
            let v = json!({"consumer": c.name, "channel": c.channel});
            h.invoke(proc.clone(), "disconnect", v.clone(), None);
            h.complete(proc.clone(), OpType::Info, "disconnect", v, Some(r));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn event_headers(id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce-specversion", "1.0".into()),
        ("ce-id", id.into()),
        ("ce-source", "/chaos".into()),
        ("ce-type", "chaos.event".into()),
        ("content-type", "application/json".into()),
    ]
}

async fn producer(
    ctx: Ctx,
    i: usize,
    name: String,
    channel: &'static str,
    pinned: Option<usize>,
    until: Instant,
) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(i as u64 * 65_537));
    let mut p = Proc::new(i, ctx.concurrency.max(16));
    let h = &ctx.history;
    for seq in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= until {
            break;
        }
        let n = pinned.unwrap_or_else(|| rng.random_range(0..ctx.nodes.len()));
        let (node, admin) = &ctx.nodes[n];
        let id = format!("{name}-{seq}");
        let v = json!({"channel": channel, "id": id, "producer": name, "seq": seq, "durable": channel == DURABLE});
        h.invoke(p.process(), "produce", v.clone(), Some(node));
        let o = ctx
            .client
            .post_raw(
                admin,
                &format!("/broker/channels/{channel}/events"),
                &event_headers(&id),
                format!("{{\"seq\":{seq}}}").into_bytes(),
            )
            .await;
        let kind = write_kind(&o, &[200], &[400]);
        let mut out = v.clone();
        if kind == OpType::Ok {
            out["offsets"] = o.json()["offsets"].clone();
        }
        complete(
            h,
            &mut p,
            kind,
            "produce",
            out,
            (kind != OpType::Ok).then(|| o.error()),
        );
        think(&mut rng).await;
    }
}

async fn wait_setup(ctx: &Ctx, consumer_nodes: &[usize]) -> anyhow::Result<()> {
    let want: Vec<String> = consumer_nodes
        .iter()
        .map(|i| ctx.nodes[*i].0.clone())
        .collect();
    let ok = super::retry(Duration::from_secs(30), || async {
        for (_, admin) in &ctx.nodes {
            let v = ctx.client.get(admin, "/broker/channels").await.json();
            let ch = &v["channels"];
            if ch[DURABLE]["durable_home"].as_str() != Some(ctx.nodes[0].0.as_str()) {
                return None;
            }
            if !want.iter().all(|n| ch[PLAIN]["nodes"].get(n).is_some()) {
                return None;
            }
        }
        Some(())
    })
    .await;
    ok.ok_or_else(|| {
        anyhow::anyhow!(
            "the broker's durable channel and interest did not reach every node in 30 s"
        )
    })
}

async fn final_read(admin: &str) -> Option<Vec<String>> {
    let url = format!("http://{admin}/broker/channels/{DURABLE}/events?from=beginning");
    let mut resp = tokio::time::timeout(STALL, reqwest::Client::new().get(&url).send())
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let mut buf = String::new();
    let mut ids = Vec::new();
    let started = Instant::now();
    let mut last = Instant::now();
    // Bounded: until 2 s without an event (the keep-alive still arrives each second), or 60 s.
    while last.elapsed() < Duration::from_secs(2) && started.elapsed() < Duration::from_secs(60) {
        let bytes = tokio::time::timeout(STALL, resp.chunk())
            .await
            .ok()?
            .ok()??;
        buf.push_str(&String::from_utf8_lossy(&bytes));
        for (ev, data, _) in sse_events(&mut buf) {
            if ev == "message" {
                let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                ids.push(v["id"].as_str().unwrap_or("?").to_string());
                last = Instant::now();
            }
        }
    }
    Some(ids)
}

/// Set up the channels and consumers, run the producers until `until` alongside `nemesis`, let
/// the consumers drain, then replay the durable channel on every node.
pub async fn run(
    ctx: &Ctx,
    until: Instant,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let n = ctx.nodes.len();
    let o = ctx
        .client
        .put(
            &ctx.nodes[0].1,
            &format!("/broker/channels/{DURABLE}/durable"),
        )
        .await;
    if o.status() != Some(200) && o.status() != Some(201) && o.status() != Some(204) {
        anyhow::bail!("cannot declare {DURABLE} durable: {}", o.error());
    }
    let mut consumers = Vec::new();
    for i in 0..n {
        consumers.push(Consumer {
            name: format!("b-{}", ctx.nodes[i].0),
            node: i,
            channel: PLAIN,
            kind: "broadcast",
            group: None,
        });
    }
    for i in n.saturating_sub(2)..n {
        consumers.push(Consumer {
            name: format!("g-{}", ctx.nodes[i].0),
            node: i,
            channel: PLAIN,
            kind: "group",
            group: Some("g"),
        });
    }
    for i in 1.min(n - 1)..3.min(n) {
        consumers.push(Consumer {
            name: format!("r-{}", ctx.nodes[i].0),
            node: i,
            channel: DURABLE,
            kind: "replay",
            group: None,
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let last_recv = Arc::new(std::sync::Mutex::new(Instant::now()));
    let tasks: Vec<_> = consumers
        .iter()
        .enumerate()
        .map(|(k, c)| {
            tokio::spawn(consume(
                ctx.clone(),
                c.clone(),
                500_000 + k as u64,
                stop.clone(),
                last_recv.clone(),
            ))
        })
        .collect();
    let setup = wait_setup(ctx, &(0..n).collect::<Vec<_>>()).await;
    if let Err(e) = setup {
        stop.store(true, Ordering::Relaxed);
        return Err(e);
    }
    let mut producers = Vec::new();
    for i in 0..n {
        producers.push(tokio::spawn(producer(
            ctx.clone(),
            i,
            format!("pp{}", i + 1),
            PLAIN,
            Some(i),
            until,
        )));
    }
    for k in 0..2 {
        producers.push(tokio::spawn(producer(
            ctx.clone(),
            n + k,
            format!("pd{k}"),
            DURABLE,
            None,
            until,
        )));
    }
    let nem = nemesis.await;
    for p in producers {
        p.await?;
    }
    // Drain: until the consumers got nothing for 5 s (bounded to 60 s).
    let drain_start = Instant::now();
    while drain_start.elapsed() < Duration::from_secs(60) {
        let idle = last_recv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if idle > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    nem?;
    let h = &ctx.history;
    for (k, i) in ctx.live().into_iter().enumerate() {
        let (node, admin) = &ctx.nodes[i];
        let proc = Process::Client(1_000_000 + k as u64);
        h.invoke(
            proc.clone(),
            "final-read",
            json!({"channel": DURABLE, "node": node}),
            Some(node),
        );
        match super::retry(Duration::from_secs(30), || final_read(admin)).await {
            Some(ids) => h.complete(proc, OpType::Ok, "final-read", json!({"ids": ids}), None),
            None => h.complete(
                proc,
                OpType::Fail,
                "final-read",
                Value::Null,
                Some("no replay within 30 s".into()),
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_are_parsed_across_chunks() {
        let mut buf = String::from(
            "event: subscribed\ndata: {}\n\nid: 4\ndata: {\"id\":\"a\"}\n\n:\n\ndata: {\"id\"",
        );
        let evs = sse_events(&mut buf);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].0, "subscribed");
        assert_eq!(evs[1], ("message".into(), "{\"id\":\"a\"}".into(), Some(4)));
        assert_eq!(buf, "data: {\"id\"");
    }
}
