//! `bench all`: every benchmark in turn, each in its own process (one process is one node),
//! and one markdown report: a summary table of every target with its verdict, then each
//! benchmark's own table. Compare a run's report with the previous one's.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context;

/// The benchmarks `bench all` runs, in order.
pub const BENCHES: [&str; 11] = [
    "local", "cluster", "erlang", "memory", "scale", "restart", "registry", "kv", "broker",
    "config", "proxy",
];

/// One benchmark's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The benchmark.
    pub name: String,
    /// Its printed report (stdout), or the error it ended with.
    pub text: String,
    /// Whether it ran to the end.
    pub ok: bool,
    /// Seconds it took.
    pub secs: f64,
}

/// The target rows of a printed report: lines whose last word is `PASS` or `MISS`, as
/// (the line without its verdict, verdict).
pub fn verdict_rows(text: &str) -> Vec<(String, &'static str)> {
    text.lines()
        .filter_map(|l| {
            let t = l.trim_end();
            let verdict = if t.ends_with("PASS") {
                "PASS"
            } else if t.ends_with("MISS") {
                "MISS"
            } else {
                return None;
            };
            let row = t[..t.len() - 4]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Some((row, verdict))
        })
        .collect()
}

/// The markdown report of `outcomes`.
pub fn markdown(outcomes: &[Outcome], command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark report\n\n`{command}`\n");
    let _ = writeln!(md, "| bench | target row | verdict |\n|---|---|---|");
    for o in outcomes {
        if !o.ok {
            let _ = writeln!(md, "| {} | (did not finish) | ERROR |", o.name);
            continue;
        }
        for (row, verdict) in verdict_rows(&o.text) {
            let _ = writeln!(
                md,
                "| {} | `{}` | {verdict} |",
                o.name,
                row.replace('|', "/")
            );
        }
    }
    for o in outcomes {
        let _ = writeln!(
            md,
            "\n## {} ({:.0} s)\n\n```text\n{}\n```",
            o.name,
            o.secs,
            o.text.trim_end()
        );
    }
    md
}

/// Run every benchmark of [`BENCHES`] (in `--quick` mode if asked) with the `bench` binary
/// `exe`, then write the markdown report to `out`. A benchmark that fails is reported as
/// such; the others still run.
pub fn run_all(exe: &Path, quick: bool, out: &Path) -> anyhow::Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for name in BENCHES {
        eprintln!("bench all: {name}...");
        let start = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.arg(name).stdin(Stdio::null()).stderr(Stdio::inherit());
        if quick {
            cmd.arg("--quick");
        }
        let output = cmd
            .output()
            .with_context(|| format!("running {} {name}", exe.display()))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let ok = output.status.success();
        outcomes.push(Outcome {
            name: name.to_string(),
            text: if ok {
                text
            } else {
                format!("{text}\n(exited with {})", output.status)
            },
            ok,
            secs: start.elapsed().as_secs_f64(),
        });
    }
    let command = format!("bench all{}", if quick { " --quick" } else { "" });
    std::fs::write(out, markdown(&outcomes, &command))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_rows_are_the_lines_ending_in_a_verdict() {
        let text = "local: header\nmetric  a  b  PASS-ish\nthroughput (M msg/s)   1.0   0.9   0.9  >= 0.95   MISS\ncall p50   1 1 1 <= 1.1 PASS  \noverall: MISS (some)\n";
        let rows = verdict_rows(text);
        assert_eq!(
            rows,
            vec![
                (
                    "throughput (M msg/s) 1.0 0.9 0.9 >= 0.95".to_string(),
                    "MISS"
                ),
                ("call p50 1 1 1 <= 1.1".to_string(), "PASS"),
            ]
        );
    }

    #[test]
    fn the_report_lists_every_row_and_failed_benches() {
        let outcomes = vec![
            Outcome {
                name: "local".into(),
                text: "x 1 PASS\ny 2 MISS\n".into(),
                ok: true,
                secs: 1.0,
            },
            Outcome {
                name: "kv".into(),
                text: "boom".into(),
                ok: false,
                secs: 2.0,
            },
        ];
        let md = markdown(&outcomes, "bench all");
        assert!(md.contains("| local | `x 1` | PASS |"), "{md}");
        assert!(md.contains("| local | `y 2` | MISS |"), "{md}");
        assert!(md.contains("| kv | (did not finish) | ERROR |"), "{md}");
        assert!(md.contains("## kv (2 s)"), "{md}");
    }
}
