//! Node names are unique in a cluster: a second node with a live node's name is refused at join,
//! while a node restarted at once under its own name (on other ports) is not.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

#[test]
fn a_second_node_with_a_live_nodes_name_is_refused_and_a_quick_restart_is_not() {
    let n1 = NodeProc::start("dn-n1");
    let mut n2 = NodeProc::start_with("dn-n2", &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2], &["dn-n1", "dn-n2"]);

    let dir = tempfile::tempdir().unwrap();
    let gossip = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut dup = Command::new(DCTL)
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .args(["node", "start", "--name", "dn-n2", "--seed", &n1.gossip])
        .args(["--gossip", &gossip])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DCTL_COOKIE", TEST_COOKIE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = dup.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = dup.kill();
            panic!("the duplicate node kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut dup.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("the name 'dn-n2' is taken"), "{err}");
    assert!(
        err.contains(&n2.gossip),
        "names the holder's address: {err}"
    );
    // the cluster is as it was
    wait_converged(&[&n1, &n2], &["dn-n1", "dn-n2"]);

    // kill -9 and restart at once on new ports: its own previous life does not block it
    let data = n2.dir.path().join("data");
    let _ = n2.signal_and_wait("KILL");
    let n2b = NodeProc::start_in("dn-n2", &data, &["--seed", &n1.gossip]);
    wait_converged(&[&n1, &n2b], &["dn-n1", "dn-n2"]);
}
