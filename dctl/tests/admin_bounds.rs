//! Bounds of the admin API: slowloris and slow-body connections are closed within the
//! documented timeouts (10 s) while the node keeps answering, and every error is JSON.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn json_error(status: u16, body: &str, want: u16) -> String {
    assert_eq!(status, want, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
        .to_string()
}

#[test]
fn every_admin_error_is_json() {
    let n = NodeProc::start("ab-json");
    let a = &n.admin;
    let (s, b) = http(a, "GET", "/no/such/thing", &[], b"");
    json_error(s, &b, 404);
    let (s, b) = http(a, "PUT", "/tree", &[], b"");
    json_error(s, &b, 405);
    let big = vec![b'x'; 2 << 20];
    let (s, b) = http(a, "POST", "/api/spawn", &[], &big);
    assert!(json_error(s, &b, 413).contains("larger than"));
    let long = format!("/tree?x={}", "a".repeat(9000));
    let (s, b) = http(a, "GET", &long, &[], b"");
    json_error(s, &b, 414);
    let huge = "h".repeat(40_000);
    let (s, b) = http(a, "GET", "/tree", &[("x-big", &huge)], b"");
    json_error(s, &b, 431);
    let (s, b) = http(a, "POST", "/api/actors/x/call?timeout_ms=abc", &[], b"{}");
    json_error(s, &b, 400);
    let (s, b) = http(a, "POST", "/api/actors/%FF/tell", &[], b"{}");
    assert!(json_error(s, &b, 400).contains("UTF-8"));
    let (s, b) = http(a, "GET", "/kv/get?key=%FF", &[], b"");
    assert!(json_error(s, &b, 400).contains("UTF-8"));
    assert!(n.dctl(&["tree"]).status.success());
}

#[test]
fn slowloris_and_slow_body_connections_are_closed_while_the_node_answers() {
    let n = NodeProc::start("ab-slow");
    let mut lazy: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(&n.admin).unwrap();
            s.write_all(b"GET /tree HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let mut slow_body = TcpStream::connect(&n.admin).unwrap();
    slow_body
        .write_all(b"POST /api/spawn HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"fac")
        .unwrap();
    let started = Instant::now();
    // the node answers meanwhile
    let (s, _) = http(&n.admin, "GET", "/health", &[], b"");
    assert_eq!(s, 200);
    assert!(n.dctl(&["tree"]).status.success());

    let limit = Duration::from_secs(10) + Duration::from_secs(5);
    slow_body.set_read_timeout(Some(limit)).unwrap();
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    for (i, c) in lazy.iter_mut().enumerate() {
        let closed = closed_by(c, started + limit);
        assert!(
            closed,
            "slowloris connection {i} open after {:?}",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed by the timeout, not at once"
    );
    assert!(n.dctl(&["tree"]).status.success());
}

#[test]
fn an_admin_api_bound_off_loopback_requires_its_generated_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let mut child = std::process::Command::new(DCTL)
        .args([
            "--admin",
            &format!("0.0.0.0:{port}"),
            "node",
            "start",
            "--name",
            "ab-token",
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--gossip", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("DCTL_COOKIE", TEST_COOKIE)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let admin = format!("127.0.0.1:{port}");
    let file = dir.path().join("data").join("admin-token");
    wait_until("the node answers", Duration::from_secs(20), || {
        TcpStream::connect(&admin).is_ok() && http(&admin, "GET", "/health", &[], b"").0 == 401
    });
    let (s, b) = http(&admin, "GET", "/tree", &[], b"");
    assert!(json_error(s, &b, 401).contains("Authorization"));
    let (s, b) = http(
        &admin,
        "GET",
        "/tree",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    json_error(s, &b, 401);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let bearer = format!("Bearer {token}");
    let (s, _) = http(&admin, "GET", "/tree", &[("Authorization", &bearer)], b"");
    assert_eq!(s, 200);
    let out = std::process::Command::new(DCTL)
        .args(["--admin", &admin, "tree"])
        .env("DCTL_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = std::process::Command::new(DCTL)
        .args(["--admin", &admin, "tree"])
        .env_remove("DCTL_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_one_line_error(&out, "Authorization");
    let _ = child.kill();
    let _ = child.wait();
}
