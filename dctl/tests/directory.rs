//! The name directory with real `dctl node start` processes: named actors are found from every
//! node as soon as their spawn returned, each name's entry is held by exactly two nodes (not
//! replicated everywhere), a stopped actor is no longer found, the entries survive the loss of
//! an owner and reach a node that joins later, and a lookup of an actor whose node died says so.

mod common;

use std::time::Duration;

use common::*;

const ACTORS: usize = 120;

fn start_seeded(name: &str, seed: &NodeProc) -> NodeProc {
    NodeProc::start_with(name, &["--seed", &seed.gossip])
}

fn spawn_echo(node: &NodeProc, name: &str) {
    let body = format!(r#"{{"factory":"echo","name":"{name}"}}"#);
    let (status, answer) = http(
        &node.admin,
        "POST",
        "/api/spawn",
        &[("content-type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(status, 201, "spawn {name} on {}: {answer}", node.name);
}

/// POST a JSON call to `actor` through `node`: (status, body).
fn call(node: &NodeProc, actor: &str, payload: &str) -> (u16, String) {
    http(
        &node.admin,
        "POST",
        &format!("/api/actors/{actor}/call"),
        &[("content-type", "application/json")],
        payload.as_bytes(),
    )
}

fn entries(node: &NodeProc) -> u64 {
    metric(
        &http_get(&node.admin, "/metrics"),
        "draft_directory_entries",
    )
}

#[test]
fn named_actors_are_found_everywhere_but_held_by_two_nodes() {
    let n1 = NodeProc::start("d-n1");
    let mut n2 = start_seeded("d-n2", &n1);
    let n3 = start_seeded("d-n3", &n1);
    wait_converged(&[&n1, &n2, &n3], &["d-n1", "d-n2", "d-n3"]);
    // every node has every other's directory actor before we count on it
    wait_until(
        "sessions between all nodes",
        Duration::from_secs(30),
        || {
            [&n1, &n2, &n3].iter().all(|n| {
                members(n)
                    .iter()
                    .all(|(_, state, connected)| state == "alive" && *connected)
            })
        },
    );

    // Found from the other nodes as soon as the spawn returned: no waiting.
    for i in 0..ACTORS {
        let name = format!("dir-{i}");
        spawn_echo(&n1, &name);
        let payload = format!(r#"{{"i":{i}}}"#);
        let (status, body) = call(&n3, &name, &payload);
        assert_eq!(
            (status, body.trim()),
            (200, payload.as_str()),
            "{name} from d-n3"
        );
    }
    for i in 0..ACTORS {
        let (status, body) = call(&n2, &format!("dir-{i}"), "1");
        assert_eq!((status, body.trim()), (200, "1"), "dir-{i} from d-n2");
    }

    // Each name's entry is on exactly two nodes (the node running the actors holds only its
    // share), and the gossip carries the count, not the names.
    wait_until(
        "every name held by exactly two owners",
        Duration::from_secs(10),
        || entries(&n1) + entries(&n2) + entries(&n3) == 2 * ACTORS as u64,
    );
    let on_n1 = entries(&n1);
    assert!(
        on_n1 < ACTORS as u64,
        "d-n1 holds {on_n1} entries: its own actors' names are sharded too"
    );
    let text = http_get(&n3.admin, "/metrics");
    assert_eq!(metric(&text, "draft_directory_local_names"), 0);

    // A stopped actor is not found any more, from any node.
    let (status, body) = http(&n1.admin, "DELETE", "/api/actors/dir-0", &[], b"");
    assert_eq!(status, 200, "{body}");
    wait_until(
        "dir-0 gone from d-n3's view",
        Duration::from_secs(10),
        || call(&n3, "dir-0", "1").0 == 404,
    );
    let (status, body) = call(&n2, "dir-0", "1");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("dir-0"), "{body}");

    // An owner is lost: every name is still found (its second owner answers), and the
    // names move to the survivors.
    n2.signal_and_wait("KILL");
    wait_until("d-n2 declared dead", Duration::from_secs(20), || {
        members(&n3)
            .iter()
            .any(|(name, state, _)| name == "d-n2" && state == "dead")
    });
    for i in 1..ACTORS {
        let (status, body) = call(&n3, &format!("dir-{i}"), "2");
        assert_eq!((status, body.trim()), (200, "2"), "dir-{i} after d-n2 died");
    }
    wait_until(
        "the two survivors hold every name twice",
        Duration::from_secs(20),
        || entries(&n1) + entries(&n3) == 2 * (ACTORS as u64 - 1),
    );

    // A node that joins later finds them all and takes its share of the entries.
    let n4 = start_seeded("d-n4", &n3);
    wait_until("d-n4 joined", Duration::from_secs(30), || {
        members(&n4)
            .iter()
            .filter(|(name, state, connected)| name != "d-n2" && state == "alive" && *connected)
            .count()
            == 3
    });
    wait_until("d-n4 holds its share", Duration::from_secs(20), || {
        entries(&n4) > 0
    });
    for i in 1..ACTORS {
        let (status, body) = call(&n4, &format!("dir-{i}"), "3");
        assert_eq!((status, body.trim()), (200, "3"), "dir-{i} from d-n4");
    }
    wait_until(
        "every name held twice after the join and the hand-off",
        Duration::from_secs(20),
        || entries(&n1) + entries(&n3) + entries(&n4) == 2 * (ACTORS as u64 - 1),
    );

    // The actors' own node dies: a lookup says so (a surviving owner kept the entry).
    let mut n1 = n1;
    n1.signal_and_wait("KILL");
    wait_until("d-n1 declared dead", Duration::from_secs(20), || {
        members(&n4)
            .iter()
            .any(|(name, state, _)| name == "d-n1" && state == "dead")
    });
    for i in [1, ACTORS / 2, ACTORS - 1] {
        let (status, body) = call(&n4, &format!("dir-{i}"), "4");
        assert_eq!(status, 502, "dir-{i}: {body}");
        assert!(body.contains("node 'd-n1' is down"), "dir-{i}: {body}");
    }
}
