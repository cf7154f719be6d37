//! Mutual TLS on the actor transport: TLS nodes cluster and talk; a node without TLS cannot
//! open a session to them; bad certificate files are a clear start-up error.

mod common;

use std::{path::Path, time::Duration};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA and one node certificate for 127.0.0.1, written as PEM files into `dir`.
fn make_certs(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
}

#[test]
fn tls_nodes_cluster_and_plain_nodes_cannot_connect() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f).display().to_string();
    let (cert, key, ca) = (p("node.pem"), p("node.key"), p("ca.pem"));
    let tls: Vec<&str> = vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca];

    let n1 = NodeProc::start_with("t-n1", &tls);
    let mut seeded = tls.clone();
    seeded.extend(["--seed", &n1.gossip]);
    let n2 = NodeProc::start_with("t-n2", &seeded);
    wait_converged(&[&n1, &n2], &["t-n1", "t-n2"]);
    let out = n1.dctl(&["spawn", "echo", "--name", "tls-echo", "--on", "t-n2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "tls-echo reachable over TLS",
        Duration::from_secs(10),
        || {
            n1.dctl(&["send", "tls-echo", "\"secure\"", "--call"])
                .status
                .success()
        },
    );

    // a node without TLS joins gossip but never gets an actor-transport session
    let plain = NodeProc::start_with("t-n3", &["--seed", &n1.gossip]);
    wait_until(
        "t-n1 tried and failed to connect to t-n3",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(n1.log_path())
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("cannot connect") && l.contains("t-n3"))
        },
    );
    assert!(members(&n1)
        .iter()
        .any(|(name, state, connected)| name == "t-n3" && state == "alive" && !connected));
    wait_until(
        "t-n3 sees t-n2 alive through gossip",
        Duration::from_secs(20),
        || {
            members(&plain)
                .iter()
                .any(|(name, state, _)| name == "t-n2" && state == "alive")
        },
    );
    // The plain node cannot reach the name's owners in the directory (nor the actor's node).
    assert_one_line_error(
        &plain.dctl(&["send", "tls-echo", "1", "--call"]),
        "is unreachable (no session to a node that knows where 'tls-echo' runs)",
    );
    assert_one_line_error(
        &n1.dctl(&["spawn", "echo", "--name", "x", "--on", "t-n3"]),
        "node 't-n3' is unreachable",
    );
    // the TLS pair still works
    assert!(n1
        .dctl(&["send", "tls-echo", "2", "--call"])
        .status
        .success());
}

#[test]
fn unreadable_tls_files_are_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let out = std::process::Command::new(DCTL)
        .args([
            "--admin",
            &format!("127.0.0.1:{}", free_port()),
            "node",
            "start",
            "--name",
            "t-bad",
        ])
        .args(["--listen", "127.0.0.1:0", "--gossip", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            &missing,
            "--tls-key",
            &missing,
            "--tls-ca",
            &missing,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("TLS certificate") && err.contains("missing.pem"),
        "{err}"
    );
    let out = std::process::Command::new(DCTL)
        .args(["node", "start", "--tls-cert", &missing])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--tls-cert alone must be refused");
}
