//! Gossip state in bulk for catch-up tests: registry instances of service `bulk` carrying a
//! metadata blob that does not compress (chitchat compresses its deltas: repeated text would fit
//! a whole state in one datagram), each the same for the same instance, so a node's view can be
//! checked intact.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;

use super::{http, http_get, metric, stdout, NodeProc};

/// Bytes of metadata per instance.
pub const BLOB: usize = 1000;

/// A counter of `n`'s `/metrics`.
pub fn counter(n: &NodeProc, name: &str) -> u64 {
    metric(&http_get(&n.admin, "/metrics"), name)
}

/// How often [`seen_within`] checks: each [`sees_all`] runs two `dctl` processes, so once a
/// second, not every 50 ms, lest the polling add to the load of dozens of nodes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Wait until `check` holds, for at most `limit`; on timeout, panic naming `what` and what the
/// check saw last.
pub fn seen_within(what: &str, limit: Duration, check: impl FnMut() -> Result<(), String>) {
    if let Err(e) = testkit::wait_until_seen(what, limit, CHECK_EVERY, check) {
        panic!("{e}");
    }
}

/// Whether `n` sees `members` members alive and exactly the instances `want` of `bulk` (with
/// `prefix`): `Err` says what it saw instead (members not alive, instances missing, or the
/// `dctl` call that failed), for a wait's timeout message. A failed call is "not yet": on a
/// machine loaded by dozens of nodes a CLI call can miss its connect timeout.
pub fn sees_all(
    n: &NodeProc,
    members: usize,
    prefix: char,
    want: &BTreeSet<String>,
) -> Result<(), String> {
    let out = n.dctl(&["cluster", "status", "--json"]);
    if !out.status.success() {
        return Err(format!(
            "cluster status failed: {}",
            super::stderr(&out).trim()
        ));
    }
    let v: Value = serde_json::from_str(&stdout(&out))
        .map_err(|e| format!("cluster status --json is not JSON ({e})"))?;
    let nodes = v["nodes"]
        .as_array()
        .ok_or("cluster status --json has no \"nodes\" array")?;
    let not_alive: Vec<String> = nodes
        .iter()
        .filter(|m| m["state"] != "alive")
        .map(|m| format!("{} {}", m["name"], m["state"]))
        .collect();
    let listed = nodes.len();
    let have = instances(n, prefix);
    if listed == members && not_alive.is_empty() && have == *want {
        return Ok(());
    }
    let missing: Vec<&String> = want.difference(&have).collect();
    Err(format!(
        "{listed} members listed, not alive: {not_alive:?}; {} of {} instances, missing {}: {:?}",
        have.len(),
        want.len(),
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    ))
}

/// [`BLOB`] letters and digits for instance `j` of member `i` (xorshift from the pair).
pub fn blob(i: usize, j: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ ((i as u64) << 32 | j as u64);
    (0..BLOB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Register instance `{prefix}{i}-{j}` of `bulk` through `n`.
pub fn register(n: &NodeProc, prefix: char, i: usize, j: usize) {
    let body = serde_json::json!({
        "service": "bulk",
        "address": format!("127.0.0.1:{}", 20000 + i * 100 + j),
        "id": format!("{prefix}{i}-{j}"),
        "metadata": {"blob": blob(i, j)},
    })
    .to_string();
    let (status, out) = http(
        &n.admin,
        "POST",
        "/registry/services",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(status, 201, "register on {}: {out}", n.name);
}

/// The instance ids of `bulk` as `n` lists them, each with its metadata intact (an instance not
/// listed yet, or with other metadata, is missing; so is every one while `dctl` fails, which a
/// caller waiting for the full set only reads as "not yet").
pub fn instances(n: &NodeProc, prefix: char) -> BTreeSet<String> {
    let out = n.dctl(&["svc", "ls", "bulk", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|inst| {
            let id = inst["id"].as_str()?;
            let (i, j) = id.strip_prefix(prefix)?.split_once('-')?;
            let want = blob(i.parse().ok()?, j.parse().ok()?);
            (inst["metadata"]["blob"].as_str() == Some(want.as_str())).then(|| id.to_string())
        })
        .collect()
}
