//! The route table: one JSON [`Route`] per key `routes/<name>` in the KV store, so every node
//! sees every change through a KV watch.

use registry::kv::{Expect, Kv, KvError};
use serde::Serialize;

use crate::{route, ProxyError, Route};

/// KV prefix of the route table.
pub const ROUTES_PREFIX: &str = "routes/";

/// The route table, through a node's KV handle.
///
/// ```no_run
/// # async fn demo(kv: registry::kv::Kv) -> Result<(), proxy_ctl::ProxyError> {
/// use proxy_ctl::{PathMatch, Route, RouteTable};
/// let table = RouteTable::new(kv);
/// table.add(Route::new("web", PathMatch::Prefix("/".into()), "web")).await?;
/// assert_eq!(table.list().await?.routes.len(), 1);
/// table.remove("web").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RouteTable {
    kv: Kv,
}

/// The routes of the table, and the entries under `routes/` that are not valid routes (written
/// around the route API, e.g. with `dctl kv put`): they are reported, never used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteList {
    /// Valid routes, by name.
    pub routes: Vec<Route>,
    /// `(key, reason)` of each invalid entry.
    pub invalid: Vec<(String, String)>,
    /// The KV revision the list was read at.
    pub revision: u64,
}

/// The KV key of a route.
pub fn key(name: &str) -> String {
    format!("{ROUTES_PREFIX}{name}")
}

/// Parse one stored entry: the key must be `routes/<name>` of the route it holds.
pub fn parse_entry(key: &str, value: &str) -> Result<Route, String> {
    let r = Route::from_json(value).map_err(|e| e.to_string())?;
    if key.strip_prefix(ROUTES_PREFIX) != Some(r.name.as_str()) {
        return Err(format!(
            "the key does not match the route's name '{}'",
            r.name
        ));
    }
    Ok(r)
}

fn kv_err(e: KvError) -> ProxyError {
    match e {
        KvError::Invalid(m) => ProxyError::Invalid(m),
        KvError::TooLarge { .. } => ProxyError::Invalid(e.to_string()),
        other => ProxyError::Unavailable(other.to_string()),
    }
}

impl RouteTable {
    /// The table in this KV store.
    pub fn new(kv: Kv) -> RouteTable {
        RouteTable { kv }
    }

    /// The table through the KV handle of the node named `node` in this process.
    pub fn of_node(node: &str) -> Result<RouteTable, ProxyError> {
        registry::kv::handle(node)
            .map(RouteTable::new)
            .ok_or_else(|| {
                ProxyError::Unavailable("the KV store is not running on this node".into())
            })
    }

    /// Add a route: validated first, then written only if no route has its name (one
    /// compare-and-swap, so two concurrent adds of one name cannot both win).
    pub async fn add(&self, mut r: Route) -> Result<Route, ProxyError> {
        r.validate()?;
        r.matcher.headers.sort();
        let value = serde_json::to_string(&r).map_err(|e| ProxyError::Invalid(e.to_string()))?;
        let res = self
            .kv
            .cas(&key(&r.name), Expect::Value(None), Some(value))
            .await
            .map_err(kv_err)?;
        if res.ok {
            Ok(r)
        } else {
            Err(ProxyError::Exists(r.name))
        }
    }

    /// Every route (linearizable read), with the invalid entries found beside them.
    pub async fn list(&self) -> Result<RouteList, ProxyError> {
        let (entries, revision) = self.kv.range(ROUTES_PREFIX).await.map_err(kv_err)?;
        let mut out = RouteList {
            revision,
            ..RouteList::default()
        };
        for e in entries {
            match parse_entry(&e.key, &e.value) {
                Ok(r) => out.routes.push(r),
                Err(why) => out.invalid.push((e.key, why)),
            }
        }
        Ok(out)
    }

    /// One route.
    pub async fn get(&self, name: &str) -> Result<Route, ProxyError> {
        route::name("route name", name)?;
        let e = self
            .kv
            .get(&key(name))
            .await
            .map_err(kv_err)?
            .ok_or_else(|| ProxyError::NotFound(name.into()))?;
        parse_entry(&e.key, &e.value).map_err(ProxyError::Invalid)
    }

    /// Remove a route.
    pub async fn remove(&self, name: &str) -> Result<(), ProxyError> {
        route::name("route name", name)?;
        match self.kv.delete(&key(name)).await.map_err(kv_err)? {
            Some(_) => Ok(()),
            None => Err(ProxyError::NotFound(name.into())),
        }
    }

    /// The KV handle.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_must_hold_the_route_its_key_names() {
        let v = r#"{"name":"a","match":{"path":{"prefix":"/"}},"service":"s"}"#;
        assert_eq!(parse_entry("routes/a", v).unwrap().name, "a");
        let err = parse_entry("routes/b", v).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let err = parse_entry("routes/a", "not json").unwrap_err();
        assert!(err.contains("malformed route"), "{err}");
    }
}
