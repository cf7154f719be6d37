//! Human-readable output.

use serde_json::Value;

/// Draw a tree JSON (`name`, `kind`, `status`, `restarts`, `children`) with box characters,
/// with each actor's live figures (`stats`) when `stats` is set.
pub fn tree_with(node: &Value, stats: bool) -> String {
    let mut out = String::new();
    line(node, "", "", stats, &mut out);
    out
}

/// An actor's live figures, short: `mailbox 3, mem 20.1 KiB (shallow), 12.0 msg/s, mean 25µs,
/// p99 31µs, up 1m20s`.
pub fn figures(s: &Value) -> String {
    let mut parts = vec![format!("mailbox {}", s["mailbox"].as_u64().unwrap_or(0))];
    if let Some(b) = s["memory_bytes"].as_u64() {
        let how = if s["memory_reported"] == true {
            "reported"
        } else {
            "shallow"
        };
        parts.push(format!("mem {} ({how})", bytes(b)));
    }
    if s["timed"] == true {
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        parts.push(format!("{:.1} msg/s", f("rate")));
        parts.push(format!("mean {}", micros(f("mean_us"))));
        parts.push(format!("p99 {}", micros(f("p99_us"))));
        parts.push(format!("handled {}", s["handled"].as_u64().unwrap_or(0)));
        parts.push(format!("up {}", uptime(f("uptime_s"))));
        if let Some(last) = s["failures"].as_array().and_then(|f| f.last()) {
            parts.push(format!("last failure: {}", last.as_str().unwrap_or("?")));
        }
    }
    parts.join(", ")
}

/// A byte count, short, in binary units: `512 B`, `20.1 KiB`, `8.0 MiB`, `1.50 GiB`.
pub fn bytes(b: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = b as f64;
    if b < 1024 {
        format!("{b} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.2} GiB", f / (KIB * KIB * KIB))
    }
}

/// A node's totals line (`/tree` `totals`).
pub fn totals(t: &Value) -> String {
    let rss = t["rss_bytes"]
        .as_u64()
        .map(|b| format!(", rss {} MiB", b / (1024 * 1024)))
        .unwrap_or_default();
    let mem = t["memory_bytes"]
        .as_u64()
        .filter(|b| *b > 0)
        .map(|b| format!(", actors' memory {}", bytes(b)))
        .unwrap_or_default();
    format!(
        "{} timed actors, mailbox {}, {:.1} msg/s, handled {}{mem}{rss}",
        t["actors"].as_u64().unwrap_or(0),
        t["mailbox"].as_u64().unwrap_or(0),
        t["rate"].as_f64().unwrap_or(0.0),
        t["handled"].as_u64().unwrap_or(0),
    )
}

fn describe(node: &Value, stats: bool) -> String {
    let s = |k: &str| {
        node.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let mut parts = vec![s("kind"), s("status")];
    if let Some(strategy) = node.get("strategy").and_then(Value::as_str) {
        parts.push(strategy.to_string());
    }
    let restarts = node.get("restarts").and_then(Value::as_u64).unwrap_or(0);
    if restarts > 0 {
        parts.push(format!("restarts: {restarts}"));
    }
    if let Some(host) = node.get("runs_on").and_then(Value::as_str) {
        parts.push(format!("on {host}"));
    }
    if let Some(from) = node.get("supervised_from").and_then(Value::as_str) {
        parts.push(format!("supervised from {from}"));
    }
    if let Some(reason) = node.get("reason").and_then(Value::as_str) {
        parts.push(format!("reason: {reason}"));
    }
    let mut text = format!("{} ({})", s("name"), parts.join(", "));
    if stats && node["stats"].is_object() {
        text.push_str(&format!(" [{}]", figures(&node["stats"])));
    }
    text
}

fn line(node: &Value, first: &str, rest: &str, stats: bool, out: &mut String) {
    out.push_str(first);
    out.push_str(&describe(node, stats));
    out.push('\n');
    let children = node
        .get("children")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let n = children.len();
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        line(
            child,
            &format!("{rest}{branch}"),
            &format!("{rest}{indent}"),
            stats,
            out,
        );
    }
}

/// A table of cluster members.
pub fn members(nodes: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<6} {:<9} {:<5} {:>7} {:<22} {:<22}\n",
        "NAME", "STATE", "TRANSPORT", "LANE", "ACTORS", "ADMIN", "GOSSIP"
    );
    for m in nodes.as_array().cloned().unwrap_or_default() {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let mut name = s("name");
        if m["self"] == true {
            name.push_str(" *");
        }
        let up = |k: &str| if m[k] == true { "up" } else { "down" };
        let actors = m["actor_count"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "{:<16} {:<6} {:<9} {:<5} {:>7} {:<22} {:<22}\n",
            name,
            s("state"),
            up("connected"),
            up("lane"),
            actors,
            s("admin_addr"),
            s("gossip_addr")
        ));
    }
    out
}

/// A duration in microseconds, short.
pub fn micros(us: f64) -> String {
    if us <= 0.0 {
        "-".into()
    } else if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// Seconds, short (`42s`, `3m07s`, `2h05m`).
pub fn uptime(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{micros, uptime};

    #[test]
    fn short_durations() {
        assert_eq!(micros(0.0), "-");
        assert_eq!(micros(12.4), "12µs");
        assert_eq!(micros(2_500_000.0), "2.50s");
        assert_eq!(uptime(7300.0), "2h01m");
    }

    #[test]
    fn figures_follow_an_actor_when_asked() {
        let t = json!({"name":"w","kind":"worker","status":"running","restarts":0,
            "stats":{"mailbox":4,"timed":true,"rate":2.5,"mean_us":40.0,"p99_us":2500.0,
                     "handled":9,"uptime_s":3.0,"failures":["panicked: x"]},"children":[]});
        assert_eq!(super::tree_with(&t, false), "w (worker, running)\n");
        assert_eq!(
            super::tree_with(&t, true),
            "w (worker, running) [mailbox 4, 2.5 msg/s, mean 40µs, p99 2.5ms, handled 9, up 3s, last failure: panicked: x]\n"
        );
        let m = json!({"name":"m","kind":"worker","status":"running","restarts":0,
            "stats":{"mailbox":0,"memory_bytes":8_600_000u64,"memory_reported":true},"children":[]});
        assert_eq!(
            super::tree_with(&m, true),
            "m (worker, running) [mailbox 0, mem 8.2 MiB (reported)]\n"
        );
        let sys = json!({"name":"kv","kind":"worker","status":"running","restarts":0,
            "stats":{"mailbox":1},"children":[]});
        assert_eq!(
            super::tree_with(&sys, true),
            "kv (worker, running) [mailbox 1]\n"
        );
    }

    #[test]
    fn byte_counts_are_short() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(20_582), "20.1 KiB");
        assert_eq!(super::bytes(3 << 30), "3.00 GiB");
        let t = json!({"actors":2,"mailbox":1,"rate":0.5,"handled":3,"memory_bytes":40960});
        assert_eq!(
            super::totals(&t),
            "2 timed actors, mailbox 1, 0.5 msg/s, handled 3, actors' memory 40.0 KiB"
        );
    }

    #[test]
    fn marks_remote_children_and_the_actors_they_stand_for() {
        let t = json!({"name":"sup","kind":"supervisor","status":"running","restarts":0,
            "strategy":"one_for_one","children":[
              {"name":"w","kind":"worker","status":"running","restarts":1,"runs_on":"n3","children":[]}]});
        assert_eq!(
            super::tree_with(&t, false),
            "sup (supervisor, running, one_for_one)\n\
             └── w (worker, running, restarts: 1, on n3)\n"
        );
        let h = json!({"name":"w","kind":"worker","status":"running","restarts":0,
            "supervised_from":"n1/sup","children":[]});
        assert_eq!(
            super::tree_with(&h, false),
            "w (worker, running, supervised from n1/sup)\n"
        );
    }

    #[test]
    fn draws_nested_children_with_restarts() {
        let t = json!({"name":"root","kind":"supervisor","status":"running","restarts":0,
            "strategy":"one_for_one","children":[
              {"name":"a","kind":"worker","status":"running","restarts":2,"children":[]},
              {"name":"b","kind":"supervisor","status":"running","restarts":0,"children":[
                {"name":"c","kind":"worker","status":"restarting","restarts":1,"children":[]}]}]});
        assert_eq!(
            super::tree_with(&t, false),
            "root (supervisor, running, one_for_one)\n\
             ├── a (worker, running, restarts: 2)\n\
             └── b (supervisor, running)\n    \
             └── c (worker, restarting, restarts: 1)\n"
        );
    }
}
