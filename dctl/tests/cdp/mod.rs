//! A small Chrome DevTools Protocol client for the browser tests: starts headless Chromium
//! with a debugging port on loopback, opens a page, evaluates scripts in it, waits for
//! conditions (bounded polls, never fixed sleeps) and takes screenshots.
//!
//! Chromium must be installed (`scripts/test.sh` installs it): [`Browser::launch`] panics when
//! it is missing, so a test that needs it fails instead of skipping.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

/// The Chromium binary: `$CHROMIUM`, else the usual Debian paths. Panics when there is none.
pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return PathBuf::from(p);
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("no Chromium installed: run ./scripts/test.sh, which installs it, or set CHROMIUM")
}

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from("target/test-artifacts"));
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A headless Chromium, killed on drop.
pub struct Browser {
    child: Child,
    /// `127.0.0.1:PORT` of its DevTools HTTP endpoint.
    pub devtools: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
        let stderr = child.stderr.take().expect("chromium stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let devtools = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("chromium did not open its DevTools port within 30 s");
            }
        };
        Browser {
            child,
            devtools,
            _profile: profile,
        }
    }

    /// Open `url` in a new tab and attach to it.
    pub fn open(&self, url: &str) -> Page {
        let target = http_json(&self.devtools, "PUT", &format!("/json/new?{url}"));
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl in {target}"))
            .to_string();
        let stream = TcpStream::connect(&self.devtools).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let (ws, _) = tungstenite::client(ws_url.as_str(), MaybeTlsStream::Plain(stream))
            .expect("DevTools websocket handshake");
        let mut page = Page { ws, next_id: 1 };
        page.call("Page.enable", json!({}));
        page.call("Runtime.enable", json!({}));
        page.wait_for(
            &format!("{url} loaded"),
            Duration::from_secs(30),
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to the DevTools endpoint; the JSON answer.
fn http_json(addr: &str, method: &str, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect to DevTools");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write");
    // Chromium keeps the connection open: read the headers, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "DevTools {path}: no full answer in 30 s"
        );
        let n = s.read(&mut chunk).expect("read the DevTools answer");
        assert!(
            n > 0 || !buf.is_empty(),
            "DevTools closed without answering {path}"
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or_else(|| panic!("DevTools answer without Content-Length: {head}"));
            if buf.len() >= end + 4 + len {
                let body = &buf[end + 4..end + 4 + len];
                return serde_json::from_slice(body)
                    .unwrap_or_else(|e| panic!("DevTools answered {text:?}: {e}"));
            }
        }
        if n == 0 {
            panic!("DevTools closed mid-answer to {path}");
        }
    }
}

/// A tab.
pub struct Page {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Send a command and wait for its result (events in between are dropped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(msg))
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} in 30 s");
            let m = self
                .ws
                .read()
                .unwrap_or_else(|e| panic!("read the answer to {method}: {e}"));
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluate a script (awaiting a promise it returns) and return its value.
    pub fn eval(&mut self, script: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("script failed: {script}\n{ex}");
        }
        r["result"]["value"].clone()
    }

    /// Poll `script` every 100 ms until it returns a truthy value (at most `limit`); returns it.
    pub fn wait_for(&mut self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(script);
            let truthy =
                !(v.is_null() || v == Value::Bool(false) || v == json!(0) || v == json!(""));
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                let path = self.screenshot(&format!("timeout-{}", slug(what)));
                panic!(
                    "timed out after {limit:?} waiting for: {what} (last value {v}); screenshot {}",
                    path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Click the element `selector` (it must exist).
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector");
        let ok = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"
        ));
        assert_eq!(ok, Value::Bool(true), "nothing to click at {selector}");
    }

    /// Save a PNG of the page under `target/test-artifacts/NAME.png`; prints and returns the path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = r["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot is base64");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        path
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}
