//! A route: which requests (path, host, headers, gRPC method) go to which registry service(s),
//! and how (HTTP/2 upstream, timeout, retries). Validation lives here, next to the type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProxyError;

/// Longest route or service name.
const MAX_NAME: usize = 128;
/// Longest path, host, header value or regex.
const MAX_TEXT: usize = 1024;
/// Most header matches on one route.
const MAX_HEADERS: usize = 16;
/// Most services in one weighted split.
const MAX_SPLIT: usize = 16;
/// Longest timeout: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Most retries.
const MAX_RETRIES: u32 = 10;

/// One route of the route table (stored as JSON under `routes/<name>` in the KV store).
///
/// ```
/// use proxy_ctl::{PathMatch, Route};
/// let mut r = Route::new("api", PathMatch::Prefix("/api".into()), "billing");
/// r.matcher.host = Some("shop.example.com".into());
/// r.validate().unwrap();
/// assert_eq!(r.split(), vec![("billing".to_string(), 100)]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name: 1-128 letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Which requests.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The registry service that gets the traffic (or the primary one of a split).
    pub service: String,
    /// A weighted split (canary): service -> weight, the primary service included. Empty: all
    /// traffic to `service`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    /// Talk HTTP/2 to the upstream instances (gRPC services need it).
    #[serde(default)]
    pub http2: bool,
    /// Upstream request timeout in milliseconds (Envoy's default, 15 s, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries on connect failure, reset and 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// The request side of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The path (absent only with `grpc`, which implies the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// The `Host` / `:authority` (exact, or `*.example.com`); absent: any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// A gRPC service (and method): matches `/{service}/{method}` on gRPC requests only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcMatch>,
}

/// How the path is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
    /// The whole path matches this regular expression (RE2 syntax).
    Regex(String),
}

/// A header that must have an exact value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (lower case).
    pub name: String,
    /// Exact value.
    pub value: String,
}

/// A gRPC service and optional method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatch {
    /// Fully qualified service, e.g. `helloworld.Greeter`.
    pub service: String,
    /// Method, e.g. `SayHello`; absent: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl Route {
    /// A route sending every request whose path matches to `service`.
    pub fn new(name: impl Into<String>, path: PathMatch, service: impl Into<String>) -> Route {
        Route {
            name: name.into(),
            matcher: RouteMatch {
                path: Some(path),
                ..RouteMatch::default()
            },
            service: service.into(),
            weights: BTreeMap::new(),
            http2: false,
            timeout_ms: None,
            retries: None,
        }
    }

    /// Parse a route from JSON (unknown fields are refused) and validate it.
    pub fn from_json(text: &str) -> Result<Route, ProxyError> {
        let mut r: Route = serde_json::from_str(text)
            .map_err(|e| ProxyError::Invalid(format!("malformed route: {e}")))?;
        r.validate()?;
        r.matcher.headers.sort();
        Ok(r)
    }

    /// The services that get traffic, with their weights (sorted by service; weight 0 dropped).
    pub fn split(&self) -> Vec<(String, u32)> {
        if self.weights.is_empty() {
            return vec![(self.service.clone(), 100)];
        }
        self.weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(s, w)| (s.clone(), *w))
            .collect()
    }

    /// Every service the route refers to.
    pub fn services(&self) -> Vec<String> {
        let mut all: Vec<String> = self.weights.keys().cloned().collect();
        all.push(self.service.clone());
        all.sort();
        all.dedup();
        all
    }

    /// Check every field; the error says which and why.
    pub fn validate(&self) -> Result<(), ProxyError> {
        name("route name", &self.name)?;
        name("service", &self.service)?;
        let m = &self.matcher;
        match (&m.path, &m.grpc) {
            (None, None) => {
                return invalid(
                    "a route needs a path match (prefix, exact or regex) or a gRPC match",
                )
            }
            (Some(_), Some(_)) => return invalid(
                "a gRPC match implies the path: give either a path match or a gRPC match, not both",
            ),
            _ => {}
        }
        match &m.path {
            Some(PathMatch::Prefix(p)) | Some(PathMatch::Exact(p))
                if !p.starts_with('/')
                    || p.len() > MAX_TEXT
                    || p.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return invalid(&format!("path '{p}' must start with '/', have no spaces and be at most {MAX_TEXT} bytes"));
            }
            Some(PathMatch::Regex(r)) => {
                if r.len() > MAX_TEXT {
                    return invalid(&format!("regex is longer than {MAX_TEXT} bytes"));
                }
                if let Err(e) = regex::Regex::new(r) {
                    // The regex crate's message spans lines (it draws a caret): keep one line.
                    let e = e.to_string();
                    let why = e
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('^'));
                    let why = why.collect::<Vec<_>>().join(" ");
                    return invalid(&format!("invalid regex '{r}': {why}"));
                }
            }
            Some(PathMatch::Prefix(_)) | Some(PathMatch::Exact(_)) | None => {}
        }
        if let Some(h) = &m.host {
            host(h)?;
        }
        if m.headers.len() > MAX_HEADERS {
            return invalid(&format!("at most {MAX_HEADERS} header matches"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for h in &m.headers {
            let ok = !h.name.is_empty()
                && h.name.len() <= 128
                && h.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
            if !ok {
                return invalid(&format!(
                    "header name '{}' must be 1-128 lower-case letters, digits, '-', '_'",
                    h.name
                ));
            }
            if h.value.len() > MAX_TEXT || h.value.chars().any(|c| c.is_control()) {
                return invalid(&format!("header '{}': the value must be at most {MAX_TEXT} bytes without control characters", h.name));
            }
            if !seen.insert(&h.name) {
                return invalid(&format!("header '{}' is matched twice", h.name));
            }
        }
        if let Some(g) = &m.grpc {
            let part = |what: &str, s: &str, dots: bool| {
                let ok = !s.is_empty()
                    && s.len() <= 256
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || (dots && c == '.'));
                if ok {
                    Ok(())
                } else {
                    invalid(&format!(
                        "gRPC {what} '{s}' must be letters, digits, '_'{}",
                        if dots { ", '.'" } else { "" }
                    ))
                }
            };
            part("service", &g.service, true)?;
            if let Some(method) = &g.method {
                part("method", method, false)?;
            }
        }
        if !self.weights.is_empty() {
            if self.weights.len() > MAX_SPLIT {
                return invalid(&format!("a split has at most {MAX_SPLIT} services"));
            }
            for s in self.weights.keys() {
                name("service", s)?;
            }
            if !self.weights.contains_key(&self.service) {
                return invalid(&format!(
                    "the weights must include the route's service '{}'",
                    self.service
                ));
            }
            let total: u64 = self.weights.values().map(|w| u64::from(*w)).sum();
            if total == 0 {
                return invalid("the weights sum to 0: at least one service must get traffic");
            }
            if total > 1_000_000 {
                return invalid("the weights sum to more than 1000000");
            }
        }
        if let Some(t) = self.timeout_ms {
            if t == 0 || t > MAX_TIMEOUT_MS {
                return invalid(&format!("timeout must be 1..={MAX_TIMEOUT_MS} ms"));
            }
        }
        if let Some(n) = self.retries {
            if n > MAX_RETRIES {
                return invalid(&format!("retries must be at most {MAX_RETRIES}"));
            }
        }
        Ok(())
    }

    /// The order Envoy tries routes in (it takes the first match): exact paths, then regexes,
    /// then prefixes longest first; among equals, the more constrained (headers, gRPC) first;
    /// then by name, so the order never depends on when routes were added.
    pub(crate) fn precedence(
        &self,
    ) -> (u8, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>, &str) {
        let m = &self.matcher;
        let (rank, len) = match (&m.path, &m.grpc) {
            (Some(PathMatch::Exact(p)), _) => (0, p.len()),
            (
                _,
                Some(GrpcMatch {
                    method: Some(_), ..
                }),
            ) => (0, 0),
            (Some(PathMatch::Regex(r)), _) => (1, r.len()),
            (Some(PathMatch::Prefix(p)), _) => (2, p.len()),
            (_, Some(g)) => (2, g.service.len() + 2),
            (None, None) => (3, 0),
        };
        let constraints = m.headers.len() + usize::from(m.grpc.is_some());
        (
            rank,
            std::cmp::Reverse(len),
            std::cmp::Reverse(constraints),
            &self.name,
        )
    }
}

fn invalid<T>(why: &str) -> Result<T, ProxyError> {
    Err(ProxyError::Invalid(why.to_string()))
}

/// Names of routes and services: 1-128 letters, digits, `-`, `_`, `.`.
pub(crate) fn name(what: &str, s: &str) -> Result<(), ProxyError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        invalid(&format!(
            "{what} '{s}' must be 1-128 letters, digits, '-', '_', '.'"
        ))
    }
}

fn host(h: &str) -> Result<(), ProxyError> {
    let body = h.strip_prefix("*.").unwrap_or(h);
    let (name_part, port) = match body.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (body, None),
    };
    let ok = !name_part.is_empty()
        && h.len() <= 253
        && name_part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        invalid(&format!(
            "host '{h}' must be a DNS name (optionally '*.' first and ':PORT' last)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route::new("r1", PathMatch::Prefix("/api".into()), "web")
    }

    fn refused(r: Route, needle: &str) {
        match r.validate() {
            Err(ProxyError::Invalid(m)) => assert!(m.contains(needle), "'{needle}' not in '{m}'"),
            other => panic!("expected Invalid({needle}), got {other:?}"),
        }
    }

    #[test]
    fn a_plain_route_is_valid_and_sends_everything_to_its_service() {
        let r = route();
        r.validate().unwrap();
        assert_eq!(r.split(), vec![("web".into(), 100)]);
    }

    #[test]
    fn bad_fields_are_refused_with_the_reason() {
        let mut r = route();
        r.name = "bad name".into();
        refused(r, "route name 'bad name'");
        let mut r = route();
        r.matcher.path = Some(PathMatch::Regex("/a(".into()));
        refused(r, "invalid regex '/a('");
        let mut r = route();
        r.matcher.path = Some(PathMatch::Prefix("api".into()));
        refused(r, "must start with '/'");
        let mut r = route();
        r.matcher.path = None;
        refused(r, "needs a path match");
        let mut r = route();
        r.matcher.host = Some("a b".into());
        refused(r, "host 'a b'");
        let mut r = route();
        r.matcher.headers = vec![HeaderMatch {
            name: "X-Up".into(),
            value: "1".into(),
        }];
        refused(r, "lower-case");
        let mut r = route();
        r.weights = [("web".to_string(), 0), ("web2".to_string(), 0)].into();
        refused(r, "sum to 0");
        let mut r = route();
        r.weights = [("other".to_string(), 5)].into();
        refused(r, "must include the route's service 'web'");
        let mut r = route();
        r.timeout_ms = Some(0);
        refused(r, "timeout");
        let mut r = route();
        r.retries = Some(11);
        refused(r, "retries");
    }

    #[test]
    fn unknown_fields_in_json_are_refused() {
        let err = Route::from_json(
            r#"{"name":"a","match":{"path":{"prefix":"/"}},"service":"s","colour":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = Route::from_json(
            r#"{"name":"a","match":{"path":{"prefix":"/"},"hots":"x"},"service":"s"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `hots`"), "{err}");
        let ok = Route::from_json(r#"{"name":"a","match":{"path":{"exact":"/x"},"headers":[{"name":"b","value":"1"},{"name":"a","value":"2"}]},"service":"s"}"#)
            .unwrap();
        assert_eq!(
            ok.matcher.headers[0].name, "a",
            "headers are kept in canonical order"
        );
    }

    #[test]
    fn precedence_puts_exact_then_regex_then_longest_prefix_then_constrained() {
        let mut rs = [
            Route::new("short", PathMatch::Prefix("/".into()), "s"),
            Route::new("long", PathMatch::Prefix("/api/v1".into()), "s"),
            Route::new("re", PathMatch::Regex("/x.*".into()), "s"),
            Route::new("exact", PathMatch::Exact("/health".into()), "s"),
            {
                let mut r = Route::new("hdr", PathMatch::Prefix("/".into()), "s");
                r.matcher.headers.push(HeaderMatch {
                    name: "x".into(),
                    value: "1".into(),
                });
                r
            },
        ];
        rs.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["exact", "re", "long", "hdr", "short"]);
    }
}
