//! `kv-lock`: clients take one lock (`chaos/lock`) the way `dctl kv lock` and etcd's v3lock do:
//! a lease, then create-if-absent of the lock key attached to it; the holder renews the lease
//! every second while it holds the lock (0.5 to 4 s), then revokes it. Each step goes through a
//! random node's admin API. A holder believes it holds the lock only until its lease's last
//! confirmed renewal plus the TTL (the acquire's invocation counts as the first renewal), as a
//! careful lock client must; [`crate::checker::lock`] checks that no two such beliefs overlap.
//!
//! Records: `acquire` (value `{"ttl_ms", "owner"}`; `ok` answers `{"lease", "owner"}`),
//! `renew` and `release` (value `{"lease"}`).

use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

use super::{complete, run_clients, think, write_kind, Ctx, Proc, MAX_OPS_PER_CLIENT};
use crate::history::OpType;

/// The lock's key.
pub const KEY: &str = "chaos/lock";
/// The lease's time to live.
pub const TTL: Duration = Duration::from_secs(3);
/// How often a holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(1);

async fn client(ctx: Ctx, i: usize, until: Instant) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_add(i as u64 * 6271));
    let mut p = Proc::new(i, ctx.concurrency);
    let h = &ctx.history;
    for n in 0..MAX_OPS_PER_CLIENT {
        if Instant::now() >= until {
            break;
        }
        let owner = format!("c{i}-{n}");
        let (node, admin) = ctx.nodes[rng.random_range(0..ctx.nodes.len())].clone();
        let ttl_ms = TTL.as_millis() as u64;
        h.invoke(
            p.process(),
            "acquire",
            json!({"ttl_ms": ttl_ms, "owner": owner}),
            Some(&node),
        );
        let believed_from = Instant::now();
        let grant = ctx
            .client
            .post_json(
                &admin,
                "/kv/lease/grant",
                &json!({"ttl_secs": TTL.as_secs()}),
            )
            .await;
        let Some(lease) = (grant.status() == Some(200))
            .then(|| grant.json()["id"].as_u64())
            .flatten()
        else {
            // No lease, so no lock: the acquire certainly did not take effect.
            complete(
                h,
                &mut p,
                OpType::Fail,
                "acquire",
                json!({"owner": owner}),
                Some(format!("lease grant: {}", grant.error())),
            );
            think(&mut rng).await;
            continue;
        };
        let cas = ctx
            .client
            .post_json(
                &admin,
                "/kv/cas",
                &json!({"key": KEY, "expect_value": null, "value": owner, "lease": lease}),
            )
            .await;
        let kind = write_kind(&cas, &[200], &[400, 409, 413]);
        match kind {
            OpType::Ok => {
                complete(
                    h,
                    &mut p,
                    OpType::Ok,
                    "acquire",
                    json!({"lease": lease, "owner": owner}),
                    None,
                );
            }
            _ => {
                complete(
                    h,
                    &mut p,
                    kind,
                    "acquire",
                    json!({"lease": lease, "owner": owner}),
                    Some(cas.error()),
                );
                // Whether or not it got the lock, give the lease back (unrecorded when the
                // acquire failed: a revoke of a lease that holds nothing changes nothing).
                let _ = ctx
                    .client
                    .post_json(&admin, "/kv/lease/revoke", &json!({"id": lease}))
                    .await;
                think(&mut rng).await;
                continue;
            }
        }

        // Hold: renew every second; stop early once the belief would run out.
        let hold = Duration::from_millis(rng.random_range(500..4000));
        let held_since = Instant::now();
        let mut believed_until = believed_from + TTL;
        loop {
            let left_in_hold = hold.saturating_sub(held_since.elapsed());
            let next = RENEW_EVERY.min(left_in_hold);
            if Instant::now() + next + Duration::from_millis(200) >= believed_until {
                break; // about to lose it: let go
            }
            tokio::time::sleep(next).await;
            if held_since.elapsed() >= hold || Instant::now() >= until {
                break;
            }
            let (rnode, radmin) = ctx.nodes[rng.random_range(0..ctx.nodes.len())].clone();
            h.invoke(p.process(), "renew", json!({"lease": lease}), Some(&rnode));
            let sent = Instant::now();
            let o = ctx
                .client
                .post_json(&radmin, "/kv/lease/keepalive", &json!({"id": lease}))
                .await;
            if o.status() == Some(200) {
                believed_until = sent + TTL;
                complete(
                    h,
                    &mut p,
                    OpType::Ok,
                    "renew",
                    json!({"lease": lease}),
                    None,
                );
            } else {
                let kind = write_kind(&o, &[200], &[400, 404]);
                complete(
                    h,
                    &mut p,
                    kind,
                    "renew",
                    json!({"lease": lease}),
                    Some(o.error()),
                );
                if kind == OpType::Info {
                    break; // a new process: it no longer counts on this lock
                }
            }
        }
        h.invoke(p.process(), "release", json!({"lease": lease}), Some(&node));
        let o = ctx
            .client
            .post_json(&admin, "/kv/lease/revoke", &json!({"id": lease}))
            .await;
        let kind = write_kind(&o, &[200], &[400, 404]);
        let err = (kind != OpType::Ok).then(|| o.error());
        complete(h, &mut p, kind, "release", json!({"lease": lease}), err);
        think(&mut rng).await;
    }
}

/// Run the clients until `until`, alongside `nemesis`.
pub async fn run(
    ctx: &Ctx,
    until: Instant,
    nemesis: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    run_clients(ctx, nemesis, |ctx, i| client(ctx, i, until)).await
}
