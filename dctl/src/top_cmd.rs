//! `dctl top`: a live view of the cluster's busiest actors, like `top`: every named actor with
//! live figures on every node, sorted by mailbox length (or rate), refreshed every interval.
//! `--once` prints one frame; when stdout is not a terminal no escape codes are written.

use std::{io::IsTerminal, time::Duration};

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::{
    client::Client,
    render::{micros, uptime},
};

#[derive(Debug, Args)]
pub struct TopArgs {
    /// What to sort by (largest first).
    #[arg(long, value_enum, default_value_t = SortBy::Mailbox)]
    pub sort: SortBy,
    /// Print one frame and exit.
    #[arg(long)]
    pub once: bool,
    /// Refresh interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub interval: u64,
    /// Rows to show.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// Messages waiting.
    Mailbox,
    /// Messages handled per second.
    Rate,
    /// Restarts.
    Restarts,
    /// Memory estimate.
    Memory,
}

/// One actor's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub node: String,
    pub name: String,
    pub status: String,
    pub mailbox: u64,
    pub rate: f64,
    pub mean_us: f64,
    pub p99_us: f64,
    pub restarts: u64,
    pub uptime_s: f64,
    /// The memory estimate and whether the actor reported part of it.
    pub memory: Option<(u64, bool)>,
}

/// Every tree node with figures in a `/tree/all` answer.
pub fn rows(all: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for entry in all["nodes"].as_array().into_iter().flatten() {
        let node = entry["node"].as_str().unwrap_or("?").to_string();
        collect(&node, &entry["tree"], &mut out);
    }
    out
}

fn collect(node: &str, t: &Value, out: &mut Vec<Row>) {
    let s = &t["stats"];
    if s.is_object() && t["kind"] == "worker" {
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        out.push(Row {
            node: node.to_string(),
            name: t["name"].as_str().unwrap_or("?").to_string(),
            status: t["status"].as_str().unwrap_or("?").to_string(),
            mailbox: s["mailbox"].as_u64().unwrap_or(0),
            rate: f("rate"),
            mean_us: f("mean_us"),
            p99_us: f("p99_us"),
            restarts: t["restarts"].as_u64().unwrap_or(0),
            uptime_s: f("uptime_s"),
            memory: s["memory_bytes"]
                .as_u64()
                .map(|b| (b, s["memory_reported"] == true)),
        });
    }
    for c in t["children"].as_array().into_iter().flatten() {
        collect(node, c, out);
    }
}

/// Sort rows, largest first by `by`, then by node and name (a stable order between frames).
pub fn sort(rows: &mut [Row], by: SortBy) {
    rows.sort_by(|a, b| {
        let key = match by {
            SortBy::Mailbox => b.mailbox.cmp(&a.mailbox),
            SortBy::Rate => b.rate.total_cmp(&a.rate),
            SortBy::Restarts => b.restarts.cmp(&a.restarts),
            SortBy::Memory => b.memory.map(|m| m.0).cmp(&a.memory.map(|m| m.0)),
        };
        key.then_with(|| a.node.cmp(&b.node))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// A memory estimate, short and without spaces (one column): `~20.1KiB` when shallow (from
/// the types only), `8.0MiB` when the actor reported its state's heap; `-` without one.
pub fn memory(m: Option<(u64, bool)>) -> String {
    match m {
        None => "-".into(),
        Some((b, reported)) => {
            let text = crate::render::bytes(b).replace(' ', "");
            if reported {
                text
            } else {
                format!("~{text}")
            }
        }
    }
}

/// One frame: a summary line per node and the table.
pub fn frame(all: &Value, by: SortBy, limit: usize) -> String {
    let mut out = String::new();
    for entry in all["nodes"].as_array().into_iter().flatten() {
        let t = &entry["totals"];
        let rss = t["rss_bytes"]
            .as_u64()
            .map(|b| format!(", rss {} MiB", b / (1024 * 1024)))
            .unwrap_or_default();
        let mem = t["memory_bytes"]
            .as_u64()
            .filter(|b| *b > 0)
            .map(|b| format!(", actors' memory {}", crate::render::bytes(b)))
            .unwrap_or_default();
        out.push_str(&format!(
            "node {}: {} actors, mailbox {}, {:.1} msg/s{mem}{rss}\n",
            entry["node"].as_str().unwrap_or("?"),
            t["actors"].as_u64().unwrap_or(0),
            t["mailbox"].as_u64().unwrap_or(0),
            t["rate"].as_f64().unwrap_or(0.0),
        ));
    }
    let mut rows = rows(all);
    sort(&mut rows, by);
    out.push_str(&format!(
        "\n{:<14} {:<28} {:<10} {:>8} {:>10} {:>9} {:>9} {:>11} {:>8} {:>8}\n",
        "NODE",
        "ACTOR",
        "STATUS",
        "MAILBOX",
        "MSG/S",
        "MEAN",
        "P99",
        "MEMORY",
        "RESTARTS",
        "UPTIME"
    ));
    for r in rows.iter().take(limit) {
        out.push_str(&format!(
            "{:<14} {:<28} {:<10} {:>8} {:>10.1} {:>9} {:>9} {:>11} {:>8} {:>8}\n",
            r.node,
            r.name,
            r.status,
            r.mailbox,
            r.rate,
            micros(r.mean_us),
            micros(r.p99_us),
            memory(r.memory),
            r.restarts,
            uptime(r.uptime_s)
        ));
    }
    out
}

pub async fn run(admin: &str, args: TopArgs) -> Result<()> {
    let client = Client::new(admin)?;
    let tty = std::io::stdout().is_terminal();
    let every = Duration::from_millis(args.interval.max(100));
    loop {
        let all = client.get("/tree/all").await?;
        let text = frame(&all, args.sort, args.limit);
        if tty && !args.once {
            // clear the screen, cursor home
            print!("\x1b[2J\x1b[H{text}");
        } else {
            print!("{text}");
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all() -> Value {
        json!({"nodes":[
          {"node":"n1","totals":{"actors":2,"mailbox":7,"handled":10,"rate":3.0,"timing":true},
           "tree":{"name":"root","kind":"supervisor","status":"running","restarts":0,
             "stats":{"mailbox":0},"children":[
             {"name":"a","kind":"worker","status":"running","restarts":2,
              "stats":{"mailbox":2,"rate":1.0,"mean_us":12.0,"p99_us":20.0,"uptime_s":75.0,"timed":true,
                       "memory_bytes":9_000_000u64,"memory_reported":true},"children":[]},
             {"name":"b","kind":"worker","status":"running","restarts":0,
              "stats":{"mailbox":5,"rate":2.0,"mean_us":1500.0,"p99_us":3000.0,"uptime_s":5.0,"timed":true,
                       "memory_bytes":20_582},"children":[]},
             {"name":"c","kind":"worker","status":"stopped","restarts":0,"children":[]}]}}]})
    }

    #[test]
    fn rows_are_the_workers_with_figures() {
        let r = rows(&all());
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(r[0].restarts, 2);
        assert_eq!(r[1].mailbox, 5);
    }

    #[test]
    fn sorted_by_mailbox_or_rate_or_restarts() {
        let mut r = rows(&all());
        sort(&mut r, SortBy::Mailbox);
        assert_eq!(r[0].name, "b");
        sort(&mut r, SortBy::Restarts);
        assert_eq!(r[0].name, "a");
        sort(&mut r, SortBy::Rate);
        assert_eq!(r[0].name, "b");
        sort(&mut r, SortBy::Memory);
        assert_eq!(r[0].name, "a");
    }

    #[test]
    fn a_frame_has_node_totals_and_a_row_per_actor() {
        let f = frame(&all(), SortBy::Mailbox, 10);
        assert!(
            f.starts_with("node n1: 2 actors, mailbox 7, 3.0 msg/s\n"),
            "{f}"
        );
        let lines: Vec<&str> = f.lines().collect();
        assert!(lines[2].starts_with("NODE"), "{f}");
        assert!(
            lines[3].starts_with("n1") && lines[3].contains(" b "),
            "{f}"
        );
        assert!(
            lines[3].contains("1.5ms") && lines[3].contains("3.0ms"),
            "{f}"
        );
        assert!(lines[4].contains("1m15s"), "{f}");
        // the memory column: shallow estimates marked with ~
        assert!(lines[3].contains(" ~20.1KiB "), "{f}");
        assert!(lines[4].contains(" 8.6MiB "), "{f}");
        assert!(!f.contains('\x1b'));
        assert_eq!(frame(&all(), SortBy::Mailbox, 1).lines().count(), 4);
    }
}
