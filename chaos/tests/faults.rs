//! The CI fault tests: every workload (kv-register, kv-set, kv-lock, broker, registry) against
//! `partition-halves`, `pause` (of the KV leader) and `kill`, on 3 real `dctl` nodes, short
//! runs, zero anomalies. Needs iptables (installed by ./scripts/test.sh) and target/debug/dctl
//! (built by `cargo build --workspace`): it fails, never skips, without them.
//!
//! Each combination runs the `chaos` binary, as a user would, and asserts its exit status and
//! result table; the iptables chain must be gone afterwards.

use std::process::Command;

const CHAOS: &str = env!("CARGO_BIN_EXE_chaos");

fn run(workload: &str, nemesis: &str) {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let dctl = std::path::Path::new(CHAOS).with_file_name("dctl");
    assert!(
        dctl.exists(),
        "{} missing: build it first (cargo build -p dctl)",
        dctl.display()
    );
    let child = Command::new(CHAOS)
        .args(["--workload", workload, "--nemesis", nemesis])
        .args([
            "--time",
            "12",
            "--nodes",
            "3",
            "--interval",
            "4",
            "--seed",
            "16",
        ])
        .arg("--out")
        .arg(out_dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run chaos");
    let chain = format!("{}{}", chaos::net::CHAIN_PREFIX, child.id());
    let out = child.wait_with_output().expect("chaos output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Keep the history and the node logs for whoever reads the failure.
        let kept = out_dir.keep();
        panic!(
            "{workload} x {nemesis} failed ({:?}); history and logs kept in {}:\n{stdout}\n{stderr}",
            out.status,
            kept.display()
        );
    }
    assert!(stdout.contains("VALID"), "{stdout}");
    assert!(
        !stdout.contains("faults applied                                    0"),
        "no fault was applied:\n{stdout}"
    );
    let history = std::fs::read_to_string(out_dir.path().join("history.jsonl")).expect("history");
    let ops = chaos::history::parse_jsonl(&history).expect("the history parses");
    assert!(
        ops.iter().any(|o| o.kind == chaos::history::OpType::Ok
            && o.process != chaos::history::Process::nemesis()),
        "no operation succeeded"
    );
    assert!(!chaos::net::chain_exists(&chain), "{chain} left behind");
}

fn nemeses(workload: &str) {
    for nemesis in ["partition-halves", "pause", "kill"] {
        run(workload, nemesis);
    }
}

#[test]
fn kv_register_under_faults() {
    nemeses("kv-register");
}

#[test]
fn kv_set_under_faults() {
    nemeses("kv-set");
}

#[test]
fn broker_under_faults() {
    nemeses("broker");
}

#[test]
fn registry_under_faults() {
    nemeses("registry");
}

#[test]
fn kv_lock_under_faults() {
    nemeses("kv-lock");
}
