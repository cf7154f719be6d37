//! `orders-saga` as a user runs it: orders placed over HTTP become events in a durable log; a
//! saga on another node charges, reserves, and compensates; `kill -9` of the saga's node in the
//! middle, and a restart: every order completes or is compensated exactly once (no double
//! charge, no lost order) and the read model matches the log.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use samples::saga::{fold, LedgerEntry, Orders, Status};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_orders-saga");

fn http(method: &str, url: &str, body: Option<Value>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = reqwest::Client::new();
        let req = match method {
            "POST" => c.post(url).json(&body.unwrap_or(Value::Null)),
            _ => c.get(url),
        };
        let r = req.send().await.expect("HTTP request");
        let code = r.status().as_u16();
        (code, r.text().await.expect("HTTP body"))
    })
}

fn model(base: &str) -> Orders {
    let (code, body) = http("GET", &format!("{base}/orders"), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("read model JSON")
}

fn terminal(s: Status) -> bool {
    matches!(s, Status::Completed | Status::Cancelled)
}

#[test]
fn a_saga_killed_mid_way_completes_or_compensates_every_order_exactly_once() {
    let mut home = Proc::start("os-home", BIN, &["--part", "home", "--name", "os-home"]);
    let gossip = home.gossip();
    let admin = home.admin();
    let base = format!("http://{}", home.http());
    let mut saga = Proc::start(
        "os-saga",
        BIN,
        &[
            "--part",
            "saga",
            "--name",
            "os-saga",
            "--seed",
            &gossip,
            "--step-delay-ms",
            "150",
        ],
    );
    saga.line(Duration::from_secs(60), |l| {
        l.starts_with("service orders-saga running")
    });

    // Seven orders: stock is 4 widgets, so o5 and o6 are refunded; o7 is over the payment limit.
    for i in 1..=7 {
        let amount = if i == 7 { 5000 } else { 10 };
        let cmd = json!({"id": format!("o{i}"), "item": "widget", "qty": 1, "amount": amount});
        let (code, body) = http("POST", &format!("{base}/orders"), Some(cmd));
        assert_eq!(code, 202, "{body}");
    }
    let (code, body) = http(
        "POST",
        &format!("{base}/orders"),
        Some(json!({"id": "o1", "item": "widget", "qty": 1, "amount": 10})),
    );
    assert_eq!(
        (code, body),
        (409, "order o1 exists".to_string()),
        "a command is validated against the read model"
    );
    let (code, _) = http(
        "POST",
        &format!("{base}/orders"),
        Some(json!({"id": "bad id", "item": "w", "qty": 1, "amount": 1})),
    );
    assert_eq!(code, 400);

    // Kill -9 the saga's node in the middle: some orders moved on, most not finished.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let at_kill = loop {
        let m = model(&base);
        let moved = m
            .orders
            .values()
            .filter(|o| o.status != Status::Placed)
            .count();
        let open = m.orders.values().filter(|o| !terminal(o.status)).count();
        if m.orders.len() == 7 && moved >= 2 && open >= 3 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the saga never got under way: {m:?}\nsaga's log:\n{}",
            tail(&saga.log(), 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    saga.kill9();
    assert!(
        at_kill.orders.values().any(|o| !terminal(o.status)),
        "killed mid-way: {at_kill:?}"
    );

    saga.restart();
    let done = wait_for("every order finished", Duration::from_secs(60), || {
        let m = model(&base);
        m.orders.values().all(|o| terminal(o.status)).then_some(m)
    });
    let status = |id: &str| done.orders[id].status;
    for id in ["o1", "o2", "o3", "o4"] {
        assert_eq!(status(id), Status::Completed, "{id}: {done:?}");
    }
    for id in ["o5", "o6", "o7"] {
        assert_eq!(status(id), Status::Cancelled, "{id}: {done:?}");
    }

    // Payments: each widget order charged exactly once, the two without stock refunded exactly
    // once, the declined one never charged.
    let (code, body) = http("GET", &format!("{base}/ledger"), None);
    assert_eq!(code, 200, "{body}");
    let ledger: BTreeMap<String, LedgerEntry> = serde_json::from_str(&body).expect("ledger JSON");
    for i in 1..=6 {
        let e = &ledger[&format!("o{i}")];
        assert_eq!((e.charged, e.charges_applied), (10, 1), "o{i}: {e:?}");
        assert_eq!(e.refunds_applied, u32::from(i >= 5), "o{i}: {e:?}");
    }
    assert!(!ledger.contains_key("o7"), "declined: never charged");

    // The log: every step's event exactly once, two saga incarnations, and folding it gives
    // exactly the read model.
    let n = done.offset.expect("an offset") + 1;
    let out = dctl_ok(
        &admin,
        &[
            "events",
            "consume",
            "orders",
            "--from",
            "beginning",
            "--count",
            &n.to_string(),
        ],
    );
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    assert_eq!(events.len() as u64, n);
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut replayed = Orders::default();
    for (offset, ev) in events.iter().enumerate() {
        let ty = ev["type"].as_str().expect("type").to_string();
        let order = ev["data"]["order"].as_str().unwrap_or("-").to_string();
        *count.entry((order, ty.clone())).or_default() += 1;
        fold(&mut replayed, Some(offset as u64), &ty, &ev["data"])
            .expect("the log folds without a surprise");
    }
    assert_eq!(replayed, done, "the read model matches the log");
    let markers = count
        .iter()
        .filter(|((_, t), _)| t == "saga.started")
        .map(|(_, n)| *n)
        .sum::<usize>();
    assert_eq!(markers, 2, "two saga incarnations");
    for ((order, ty), n) in &count {
        if ty != "saga.started" {
            assert_eq!(*n, 1, "{ty} for {order} appears {n} times");
        }
    }
    for i in 1..=4 {
        for ty in [
            "order.placed",
            "payment.charged",
            "inventory.reserved",
            "order.completed",
        ] {
            assert!(
                count.contains_key(&(format!("o{i}"), ty.to_string())),
                "o{i} {ty}"
            );
        }
    }
    for i in 5..=6 {
        for ty in [
            "payment.charged",
            "inventory.out_of_stock",
            "payment.refunded",
            "order.cancelled",
        ] {
            assert!(
                count.contains_key(&(format!("o{i}"), ty.to_string())),
                "o{i} {ty}"
            );
        }
    }
    assert!(count.contains_key(&("o7".to_string(), "payment.declined".to_string())));
    assert!(saga.term(Duration::from_secs(20)).success());
    assert!(home.term(Duration::from_secs(20)).success());
}
