//! Admin HTTP routes of the KV store (JSON; errors are `{"error": "..."}` with a 4xx/5xx status).
//!
//! | route | body / query | answer |
//! |---|---|---|
//! | `GET /kv/get?key=K[&serializable=true]` | | the entry, or 404 |
//! | `POST /kv/put` | `{"key","value","ttl_secs"?,"lease"?}` | `{"revision","lease"?}` |
//! | `POST /kv/delete` | `{"key"}` | `{"deleted","revision"?}` |
//! | `POST /kv/cas` | `{"key","expect_value"?: string\|null,"expect_revision"?,"value"?: string\|null,"lease"?}` | `{"ok":true,"revision"}` or 409 |
//! | `GET /kv/range?prefix=P[&serializable=true]` | | `{"entries":[..],"revision"}` |
//! | `GET /kv/watch?prefix=P[&from=REV\|0\|beginning]` | | NDJSON stream of events (no `from`: live only; `0`/`beginning`: from the oldest kept revision, after a `{"compacted_before":N}` line when older ones were compacted) |
//! | `GET /kv/status` | | leader, voters, learners, term, commit_index, ... |
//! | `POST /kv/lease/grant` | `{"ttl_secs"}` | `{"id"}` |
//! | `POST /kv/lease/keepalive`, `/kv/lease/revoke` | `{"id"}` | `{}` |
//! | `GET /kv/members` | | `{"members":[{name,id,role,leader,state,match_index,lag}]}` |
//! | `POST /kv/members/add` | `{"name","learner"?}` | the members after the change |
//! | `POST /kv/members/remove`, `/kv/members/promote` | `{"name"}` | the members after the change (400 with the reason when refused) |

use std::{collections::HashMap, convert::Infallible, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Expect, Kv, KvError};

type Q = Query<HashMap<String, String>>;

fn err(e: KvError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, KvError> {
    serde_json::from_slice(body).map_err(|e| KvError::Invalid(format!("bad JSON body: {e}")))
}

/// The routes, to merge into the admin server.
pub(crate) fn routes(kv: Kv) -> Router {
    Router::new()
        .route("/kv/get", get(h_get))
        .route("/kv/put", post(h_put))
        .route("/kv/delete", post(h_delete))
        .route("/kv/cas", post(h_cas))
        .route("/kv/range", get(h_range))
        .route("/kv/watch", get(h_watch))
        .route("/kv/status", get(h_status))
        .route("/kv/lease/grant", post(h_grant))
        .route("/kv/lease/keepalive", post(h_keepalive))
        .route("/kv/lease/revoke", post(h_revoke))
        .route("/kv/members", get(h_members))
        .route("/kv/members/add", post(h_member_add))
        .route("/kv/members/remove", post(h_member_remove))
        .route("/kv/members/promote", post(h_member_promote))
        .with_state(kv)
}

fn entry_json(e: &super::KvEntry) -> Value {
    json!({
        "key": e.key, "value": e.value, "create_revision": e.create_revision,
        "mod_revision": e.mod_revision, "version": e.version, "lease": e.lease,
    })
}

async fn h_get(State(kv): State<Kv>, Query(q): Q) -> Response {
    let Some(key) = q.get("key") else {
        return err(KvError::Invalid("missing ?key=".into()));
    };
    let lin = q.get("serializable").map(|v| v != "true").unwrap_or(true);
    match kv.get_at(key, lin).await {
        Ok((Some(e), rev)) => {
            let mut v = entry_json(&e);
            v["revision"] = json!(rev);
            ok(v)
        }
        Ok((None, _)) => err(KvError::NotFound(key.clone())),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    key: String,
    value: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    lease: Option<u64>,
}

async fn h_put(State(kv): State<Kv>, body: Bytes) -> Response {
    let b: PutBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    let res = match (b.ttl_secs, b.lease) {
        (Some(_), Some(_)) => Err(KvError::Invalid("give ttl_secs or lease, not both".into())),
        (Some(t), None) => {
            if t == 0 || t > super::MAX_TTL_SECS {
                Err(KvError::Invalid(format!(
                    "ttl must be 1 to {} seconds",
                    super::MAX_TTL_SECS
                )))
            } else {
                kv.put_with_ttl(&b.key, &b.value, Duration::from_secs(t))
                    .await
                    .map(|(r, l)| json!({"revision": r, "lease": l}))
            }
        }
        (None, Some(l)) => kv
            .put_with_lease(&b.key, &b.value, l)
            .await
            .map(|r| json!({"revision": r, "lease": l})),
        (None, None) => kv
            .put(&b.key, &b.value)
            .await
            .map(|r| json!({"revision": r})),
    };
    match res {
        Ok(v) => ok(v),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

async fn h_delete(State(kv): State<Kv>, body: Bytes) -> Response {
    let b: KeyBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    match kv.delete(&b.key).await {
        Ok(prev) => ok(json!({"deleted": prev.is_some()})),
        Err(e) => err(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    key: String,
    /// Present (string or null) to compare the value; absent to compare the revision.
    #[serde(default, with = "double_option")]
    expect_value: Option<Option<String>>,
    #[serde(default)]
    expect_revision: Option<u64>,
    /// The new value; null deletes.
    #[serde(default)]
    value: Option<String>,
    /// A lease to attach the new value to.
    #[serde(default)]
    lease: Option<u64>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?))
    }
}

async fn h_cas(State(kv): State<Kv>, body: Bytes) -> Response {
    let b: CasBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    let expect =
        match (b.expect_value, b.expect_revision) {
            (Some(v), None) => Expect::Value(v),
            (None, Some(r)) => Expect::Revision(r),
            _ => return err(KvError::Invalid(
                "give exactly one of expect_value (string or null for absent) and expect_revision"
                    .into(),
            )),
        };
    match kv.cas_with_lease(&b.key, expect, b.value, b.lease).await {
        Ok(r) if r.ok => ok(json!({"ok": true, "revision": r.revision})),
        Ok(r) => {
            let detail = match r.current {
                Some(e) => format!("its value is '{}' (revision {})", e.value, e.mod_revision),
                None => "it does not exist".to_string(),
            };
            err(KvError::CompareFailed { key: b.key, detail })
        }
        Err(e) => err(e),
    }
}

async fn h_range(State(kv): State<Kv>, Query(q): Q) -> Response {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let lin = q.get("serializable").map(|v| v != "true").unwrap_or(true);
    match kv.range_at(&prefix, lin).await {
        Ok((entries, rev)) => ok(json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "revision": rev,
        })),
        Err(e) => err(e),
    }
}

async fn h_status(State(kv): State<Kv>) -> Response {
    match kv.status().await {
        Ok(s) => ok(serde_json::to_value(&s).unwrap_or(Value::Null)),
        Err(e) => err(e),
    }
}

async fn h_watch(State(kv): State<Kv>, Query(q): Q) -> Response {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    // No `from`: live changes only. `from=0` or `from=beginning`: the oldest revision kept,
    // first saying (one `{"compacted_before": N}` line) when older ones were compacted.
    let (w, note) = match q.get("from").map(String::as_str) {
        None => match kv.watch(&prefix, None).await {
            Ok(w) => (w, None),
            Err(e) => return err(e),
        },
        Some("0") | Some("beginning") => match kv.watch_from_oldest(&prefix).await {
            Ok((w, oldest)) if oldest > 1 => (
                w,
                Some(format!("{}\n", json!({ "compacted_before": oldest }))),
            ),
            Ok((w, _)) => (w, None),
            Err(e) => return err(e),
        },
        Some(f) => match f.parse::<u64>() {
            Ok(f) => match kv.watch(&prefix, Some(f)).await {
                Ok(w) => (w, None),
                Err(e) => return err(e),
            },
            Err(_) => {
                return err(KvError::Invalid(
                    "?from= must be a revision number, 0 or 'beginning'".into(),
                ))
            }
        },
    };
    let head = futures::stream::iter(note.map(|n| Ok::<_, Infallible>(Bytes::from(n))));
    let stream = futures::stream::unfold(Some(w), |w| async move {
        let mut w = w?;
        let line = match w.next().await {
            Ok(ev) => {
                let mut s = serde_json::to_string(&ev).unwrap_or_default();
                s.push('\n');
                return Some((Ok::<_, Infallible>(Bytes::from(s)), Some(w)));
            }
            Err(e) => format!("{}\n", json!({"error": e.to_string()})),
        };
        Some((Ok(Bytes::from(line)), None))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(futures::StreamExt::chain(head, stream)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    ttl_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    id: u64,
}

async fn h_grant(State(kv): State<Kv>, body: Bytes) -> Response {
    let b: GrantBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return err(e),
    };
    if b.ttl_secs == 0 || b.ttl_secs > super::MAX_TTL_SECS {
        return err(KvError::Invalid(format!(
            "ttl must be 1 to {} seconds",
            super::MAX_TTL_SECS
        )));
    }
    match kv.grant(Duration::from_secs(b.ttl_secs)).await {
        Ok(id) => ok(json!({"id": id})),
        Err(e) => err(e),
    }
}

async fn h_keepalive(State(kv): State<Kv>, body: Bytes) -> Response {
    match parse::<LeaseBody>(&body) {
        Ok(b) => match kv.keep_alive(b.id).await {
            Ok(ttl) => ok(json!({"ttl_secs": ttl.as_secs()})),
            Err(e) => err(e),
        },
        Err(e) => err(e),
    }
}

async fn h_revoke(State(kv): State<Kv>, body: Bytes) -> Response {
    match parse::<LeaseBody>(&body) {
        Ok(b) => match kv.revoke(b.id).await {
            Ok(()) => ok(json!({})),
            Err(e) => err(e),
        },
        Err(e) => err(e),
    }
}

fn members_answer(r: Result<Vec<super::MemberInfo>, KvError>) -> Response {
    match r {
        Ok(m) => ok(json!({ "members": m })),
        Err(e) => err(e),
    }
}

async fn h_members(State(kv): State<Kv>) -> Response {
    members_answer(kv.members().await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    name: String,
    #[serde(default)]
    learner: bool,
}

async fn h_member_add(State(kv): State<Kv>, body: Bytes) -> Response {
    match parse::<MemberBody>(&body) {
        Ok(b) => members_answer(kv.add_member(&b.name, b.learner).await),
        Err(e) => err(e),
    }
}

async fn h_member_remove(State(kv): State<Kv>, body: Bytes) -> Response {
    match parse::<MemberBody>(&body) {
        Ok(b) if b.learner => err(KvError::Invalid("'learner' is for add only".into())),
        Ok(b) => members_answer(kv.remove_member(&b.name).await),
        Err(e) => err(e),
    }
}

async fn h_member_promote(State(kv): State<Kv>, body: Bytes) -> Response {
    match parse::<MemberBody>(&body) {
        Ok(b) if b.learner => err(KvError::Invalid("'learner' is for add only".into())),
        Ok(b) => members_answer(kv.promote_member(&b.name).await),
        Err(e) => err(e),
    }
}
