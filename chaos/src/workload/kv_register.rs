//! `kv-register`: clients read, write and compare-and-swap a few keys (`chaos/reg/<k>`, values
//! unique integers), each operation through a random node's admin API (`/kv/get` linearizable,
//! `/kv/put`, `/kv/cas`). Values are `[key, v]` tuples as [`crate::checker::register`] expects.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Instant,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::{complete, read_kind, run_clients, think, write_kind, Ctx, Proc, MAX_OPS_PER_CLIENT};
use crate::{checker::register::kv, history::OpType};

/// Number of keys.
pub const KEYS: usize = 3;

fn key(k: usize) -> String {
    format!("chaos/reg/{k}")
}

fn enc(k: &str) -> String {
    k.replace('/', "%2F")
}

async fn client(ctx: Ctx, i: usize, until: Instant, next: Arc<AtomicI64>) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(i as u64 * 7919));
    let mut p = Proc::new(i, ctx.concurrency);
    let mut last_seen: Vec<Option<i64>> = vec![None; KEYS];
    let h = &ctx.history;
    for _ in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= until {
            break;
        }
        let k = rng.random_range(0..KEYS);
        let name = key(k);
        let (node, admin) = &ctx.nodes[rng.random_range(0..ctx.nodes.len())];
        let roll = rng.random_range(0..100);
        if roll < 50 {
            h.invoke(p.process(), "read", kv(&name, Value::Null), Some(node));
            let o = ctx
                .client
                .get(admin, &format!("/kv/get?key={}", enc(&name)))
                .await;
            // A 404 means "absent" only when it is the KV's own answer: a node that is still
            // starting answers "no such endpoint" with 404 too (see the README's findings).
            let absent = o.status() == Some(404)
                && o.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("key '") && e.ends_with("' not found"));
            let kind = if absent {
                OpType::Ok
            } else {
                read_kind(&o, &[200])
            };
            let v = match o.status() {
                Some(200) => o.json()["value"]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok()),
                _ => None,
            };
            if kind == OpType::Ok && o.status() == Some(200) && v.is_none() {
                complete(
                    h,
                    &mut p,
                    OpType::Fail,
                    "read",
                    kv(&name, Value::Null),
                    Some(format!("unparsable value: {}", o.error())),
                );
            } else if kind == OpType::Ok {
                last_seen[k] = v;
                complete(h, &mut p, OpType::Ok, "read", kv(&name, json!(v)), None);
            } else {
                complete(
                    h,
                    &mut p,
                    kind,
                    "read",
                    kv(&name, Value::Null),
                    Some(o.error()),
                );
            }
        } else if roll < 75 {
            let v = next.fetch_add(1, Ordering::Relaxed);
            h.invoke(p.process(), "write", kv(&name, json!(v)), Some(node));
            let o = ctx
                .client
                .post_json(
                    admin,
                    "/kv/put",
                    &json!({"key": name, "value": v.to_string()}),
                )
                .await;
            let kind = write_kind(&o, &[200], &[400, 413]);
            let err = (kind != OpType::Ok).then(|| o.error());
            complete(h, &mut p, kind, "write", kv(&name, json!(v)), err);
        } else {
            let old = last_seen[k];
            let v = next.fetch_add(1, Ordering::Relaxed);
            let value = kv(&name, json!([old, v]));
            h.invoke(p.process(), "cas", value.clone(), Some(node));
            let body = json!({"key": name, "expect_value": old.map(|o| o.to_string()), "value": v.to_string()});
            let o = ctx.client.post_json(admin, "/kv/cas", &body).await;
            let kind = write_kind(&o, &[200], &[400, 409, 413]);
            if kind == OpType::Ok {
                last_seen[k] = Some(v);
            }
            let err = (kind != OpType::Ok).then(|| o.error());
            complete(h, &mut p, kind, "cas", value, err);
        }
        think(&mut rng).await;
    }
}

/// Run the clients until `until`, alongside `nemesis`.
pub async fn run(
    ctx: &Ctx,
    until: Instant,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicI64::new(1));
    run_clients(ctx, nemesis, |ctx, i| client(ctx, i, until, next.clone())).await
}
