//! `cargo run -p chaos -- --workload kv-register --nemesis partition-majorities-ring --time 60
//! --nodes 5 [--seed N] [--out DIR]`: prints the result table; exits 0 only when the checker
//! found no anomaly (1 with anomalies, 2 when the run itself failed).
//! `--workload W --check DIR/history.jsonl` checks a kept history again, with the same exit codes.

#[tokio::main]
async fn main() {
    let opts = <chaos::run::Options as clap::Parser>::parse();
    if let Some(path) = &opts.check {
        std::process::exit(check_kept(&opts.workload, path));
    }
    match chaos::run::run(opts.clone()).await {
        Ok(outcome) => {
            print!("{}", outcome.table(&opts));
            std::process::exit(if outcome.anomalies() == 0 { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Check a kept history; the exit code.
fn check_kept(workload: &str, path: &std::path::Path) -> i32 {
    let report = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        .and_then(|text| chaos::history::parse_jsonl(&text).map_err(anyhow::Error::msg))
        .and_then(|ops| chaos::run::check(workload, &ops));
    match report {
        Ok(r) => {
            println!(
                "{} checker: {} operations, {} anomalies",
                r.checker,
                r.ops,
                r.anomalies.len()
            );
            for a in &r.anomalies {
                println!("  {}: {}", a.kind, a.detail);
            }
            for (k, v) in &r.notes {
                println!("  {k}: {v}");
            }
            println!(
                "{}",
                if r.anomalies.is_empty() {
                    "VALID"
                } else {
                    "INVALID"
                }
            );
            i32::from(!r.anomalies.is_empty())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}
