//! The partition rules on their own: a cut drops a node's connections to the other side and
//! leaves the test's own, the run's chain is removed even when the run panics, and a chain left
//! by a dead run is swept. Needs iptables (installed by ./scripts/test.sh): fails without it.

use std::{net::TcpListener, os::unix::process::CommandExt, process::Command, sync::Mutex};

use chaos::net::{chain_exists, sweep_leftovers, Firewall, Member, CHAIN_PREFIX};

// The tests of this file share the process's chain name: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn members() -> Vec<Member> {
    let base = 58_000 + (std::process::id() % 500) * 2;
    vec![
        Member {
            ip: "127.0.0.2".into(),
            gid: base,
        },
        Member {
            ip: "127.0.0.3".into(),
            gid: base + 1,
        },
    ]
}

/// Whether a process running with `gid` can open a TCP connection to `addr` within 2 s.
fn connects_as(gid: u32, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let status = Command::new("timeout")
        .args([
            "2",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{host}/{port}"),
        ])
        .gid(gid)
        .status()
        .expect("run bash");
    status.success()
}

#[test]
fn a_cut_drops_the_nodes_connections_and_not_the_clients() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let m = members();
    let listener = TcpListener::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut fw = Firewall::new(&m).expect("iptables (./scripts/test.sh installs it)");
    assert!(connects_as(m[0].gid, &addr), "before the cut n1 reaches n2");
    fw.cut(&[(0, 1)]).expect("cut");
    assert!(
        !connects_as(m[0].gid, &addr),
        "n1's connection to n2 must be dropped"
    );
    assert!(
        connects_as(0, &addr),
        "the test's own clients are never cut off"
    );
    fw.heal().expect("heal");
    assert_eq!(fw.active_cuts(), 0);
    assert!(
        connects_as(m[0].gid, &addr),
        "after the heal n1 reaches n2 again"
    );
}

#[test]
fn the_chain_is_removed_when_the_run_panics() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let chain = format!("{CHAIN_PREFIX}{}", std::process::id());
    let m = members();
    let r = std::panic::catch_unwind(|| {
        let mut fw = Firewall::new(&m).expect("iptables");
        fw.cut(&[(0, 1)]).expect("cut");
        assert!(chain_exists(fw.chain()));
        panic!("the run failed");
    });
    assert!(r.is_err());
    assert!(
        !chain_exists(&chain),
        "{chain} must be gone after the panic"
    );
}

#[test]
fn a_dead_runs_chain_is_swept() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut dead = Command::new("true").spawn().expect("spawn");
    let pid = dead.id();
    dead.wait().expect("reap");
    let chain = format!("{CHAIN_PREFIX}{pid}");
    let ipt = |args: &[&str]| {
        assert!(Command::new("iptables")
            .arg("-w")
            .arg("5")
            .args(args)
            .status()
            .expect("iptables")
            .success())
    };
    ipt(&["-N", &chain]);
    ipt(&["-A", &chain, "-d", "127.0.0.250", "-j", "DROP"]);
    ipt(&["-I", "OUTPUT", "-j", &chain]);
    let removed = sweep_leftovers().expect("sweep");
    assert!(removed.contains(&chain), "{removed:?}");
    assert!(!chain_exists(&chain));
    let rules = Command::new("iptables")
        .args(["-w", "5", "-S", "OUTPUT"])
        .output()
        .expect("iptables");
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains(&chain),
        "the jump is gone too"
    );
}
