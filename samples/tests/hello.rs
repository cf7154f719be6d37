//! The quick start runs as a user runs it: it answers over HTTP, takes a config change from
//! `dctl kv put` live, refuses a malformed one (keeping the old), and stops on SIGTERM.

mod common;

use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_hello");

fn get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })
}

#[test]
fn the_quick_start_serves_applies_config_live_and_refuses_a_bad_value() {
    let mut p = Proc::start("hello", BIN, &["--name", "hello-node"]);
    let admin = p.admin();
    let url = format!("http://{}/hello/Ada", p.http());
    assert_eq!(get(&url).as_deref(), Some("Hello, Ada!"));
    dctl_ok(&admin, &["kv", "put", "config/hello", "\"Bonjour\""]);
    wait_for("the new greeting", Duration::from_secs(5), || {
        (get(&url).as_deref() == Some("Bonjour, Ada!")).then_some(())
    });
    dctl_ok(&admin, &["kv", "put", "config/hello", "\"\""]);
    let svc = format!("http://{}/service", p.http());
    let status = wait_for("the refusal", Duration::from_secs(5), || {
        let v: serde_json::Value = serde_json::from_str(&get(&svc)?).ok()?;
        v["config"]["error"].as_str().map(str::to_string)
    });
    assert_eq!(status, "invalid: empty greeting");
    assert_eq!(
        get(&url).as_deref(),
        Some("Bonjour, Ada!"),
        "the old configuration stays"
    );
    let ls = dctl_ok(&admin, &["svc", "ls", "hello"]);
    assert!(ls.contains("config_error=invalid: empty greeting"), "{ls}");
    assert!(p.term(Duration::from_secs(20)).success());
}
