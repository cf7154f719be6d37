//! `kv-set`: clients add unique integers to a set, each add a put of `chaos/set/<v>` through a
//! random node; after the heal, every node reads the whole set back (`/kv/range`, linearizable).

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::{complete, retry, run_clients, think, write_kind, Ctx, Proc, MAX_OPS_PER_CLIENT};
use crate::history::{OpType, Process};

const PREFIX: &str = "chaos/set/";

async fn client(ctx: Ctx, i: usize, until: Instant, next: Arc<AtomicI64>) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(i as u64 * 104_729));
    let mut p = Proc::new(i, ctx.concurrency);
    let h = &ctx.history;
    for _ in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= until {
            break;
        }
        let v = next.fetch_add(1, Ordering::Relaxed);
        let (node, admin) = &ctx.nodes[rng.random_range(0..ctx.nodes.len())];
        h.invoke(p.process(), "add", json!(v), Some(node));
        let o = ctx
            .client
            .post_json(
                admin,
                "/kv/put",
                &json!({"key": format!("{PREFIX}{v}"), "value": v.to_string()}),
            )
            .await;
        let kind = write_kind(&o, &[200], &[400, 413]);
        let err = (kind != OpType::Ok).then(|| o.error());
        complete(h, &mut p, kind, "add", json!(v), err);
        think(&mut rng).await;
    }
}

/// Run the clients until `until` alongside `nemesis`, then the final reads.
pub async fn run(
    ctx: &Ctx,
    until: Instant,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicI64::new(0));
    run_clients(ctx, nemesis, |ctx, i| client(ctx, i, until, next.clone())).await?;
    let h = &ctx.history;
    for (n, i) in ctx.live().into_iter().enumerate() {
        let (node, admin) = &ctx.nodes[i];
        let proc = Process::Client(1_000_000 + n as u64);
        h.invoke(proc.clone(), "read", json!({"node": node}), Some(node));
        let got = retry(Duration::from_secs(30), || async {
            let o = ctx
                .client
                .get(
                    admin,
                    &format!("/kv/range?prefix={}", PREFIX.replace('/', "%2F")),
                )
                .await;
            (o.status() == Some(200)).then(|| o.json())
        })
        .await;
        match got {
            Some(v) => {
                let vals: Vec<Value> = v["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["value"].as_str().and_then(|s| s.parse::<i64>().ok()))
                    .map(Value::from)
                    .collect();
                h.complete(proc, OpType::Ok, "read", Value::Array(vals), None);
            }
            None => h.complete(
                proc,
                OpType::Fail,
                "read",
                Value::Null,
                Some("no answer within 30 s".into()),
            ),
        }
    }
    Ok(())
}
