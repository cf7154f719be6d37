//! `registry`: clients register instances of `chaos-svc` (unique ids) on random nodes and
//! deregister some of them again (on the node that holds them); after the heal, every node's
//! view, taken once they all agree or after [`CONVERGENCE_BOUND`].

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::{complete, think, write_kind, Ctx, Proc, MAX_OPS_PER_CLIENT};
use crate::history::{OpType, Process};

/// The service the workload registers.
pub const SERVICE: &str = "chaos-svc";

/// How long after the heal the views must agree.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(20);

async fn client(ctx: Ctx, i: usize, until: Instant, next: Arc<AtomicI64>) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(i as u64 * 31_337));
    let mut p = Proc::new(i, ctx.concurrency);
    let h = &ctx.history;
    let mut mine: Vec<(String, usize)> = Vec::new();
    for _ in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= until {
            break;
        }
        if !mine.is_empty() && rng.random_bool(0.3) {
            let (id, n) = mine.swap_remove(rng.random_range(0..mine.len()));
            let (node, admin) = &ctx.nodes[n];
            let v = json!({"service": SERVICE, "id": id, "node": node});
            h.invoke(p.process(), "deregister", v.clone(), Some(node));
            let o = ctx
                .client
                .delete(admin, &format!("/registry/services/{SERVICE}/{id}"))
                .await;
            let kind = write_kind(&o, &[204], &[400, 404]);
            complete(
                h,
                &mut p,
                kind,
                "deregister",
                v,
                (kind != OpType::Ok).then(|| o.error()),
            );
        } else {
            let id = format!("i{}", next.fetch_add(1, Ordering::Relaxed));
            let n = rng.random_range(0..ctx.nodes.len());
            let (node, admin) = &ctx.nodes[n];
            let v = json!({"service": SERVICE, "id": id, "node": node});
            h.invoke(p.process(), "register", v.clone(), Some(node));
            let body = json!({"service": SERVICE, "address": "127.0.0.1:9", "id": id});
            let o = ctx
                .client
                .post_json(admin, "/registry/services", &body)
                .await;
            let kind = write_kind(&o, &[201], &[400]);
            if kind == OpType::Ok {
                mine.push((id, n));
            }
            complete(
                h,
                &mut p,
                kind,
                "register",
                v,
                (kind != OpType::Ok).then(|| o.error()),
            );
        }
        think(&mut rng).await;
        think(&mut rng).await;
    }
}

async fn view(ctx: &Ctx, admin: &str) -> Option<BTreeSet<String>> {
    let o = ctx
        .client
        .get(admin, &format!("/registry/services?service={SERVICE}"))
        .await;
    if o.status() != Some(200) {
        return None;
    }
    let v = o.json();
    Some(
        v["instances"]
            .as_array()?
            .iter()
            .filter_map(|i| i["id"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Run the clients until `until` alongside `nemesis`, then take the final views.
pub async fn run(
    ctx: &Ctx,
    until: Instant,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicI64::new(0));
    let clients: Vec<_> = (0..ctx.concurrency)
        .map(|i| tokio::spawn(client(ctx.clone(), i, until, next.clone())))
        .collect();
    let nem = nemesis.await;
    for c in clients {
        c.await?;
    }
    nem?;
    let healed = Instant::now();
    let live = ctx.live();
    let mut views: Vec<Option<BTreeSet<String>>> = Vec::new();
    // Bounded: until the views agree or the bound passes.
    while Instant::now() < healed + CONVERGENCE_BOUND {
        views.clear();
        for i in &live {
            views.push(view(ctx, &ctx.nodes[*i].1).await);
        }
        let agree = views.iter().all(|v| v.is_some() && *v == views[0]);
        if agree {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let h = &ctx.history;
    for (n, (i, v)) in live.iter().zip(views).enumerate() {
        let node = &ctx.nodes[*i].0;
        let proc = Process::Client(1_000_000 + n as u64);
        h.invoke(proc.clone(), "view", json!({"node": node}), Some(node));
        match v {
            Some(ids) => h.complete(
                proc,
                OpType::Ok,
                "view",
                json!({"ids": ids, "after_heal_ms": healed.elapsed().as_millis() as u64}),
                None,
            ),
            None => h.complete(
                proc,
                OpType::Fail,
                "view",
                Value::Null,
                Some("no answer".into()),
            ),
        }
    }
    Ok(())
}
