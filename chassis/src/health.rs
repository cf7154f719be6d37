//! Health: liveness (the service's supervisor runs) and readiness (every user check passes and
//! the service is not stopping). Readiness is re-evaluated every [`CHECK_EVERY`] and published
//! in the registry as the instance's health (`passing` / `critical`), so the proxy controller
//! routes only to ready instances.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::Serialize;

/// How often the readiness checks run.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A check's answer is bounded by this; a check that takes longer fails.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A readiness check: `Ok` when ready, else why not.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The service's readiness, as `GET /health/ready` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Whether the instance should get traffic.
    pub ready: bool,
    /// What is not ready, one `name: reason` each (`stopping` while shutting down).
    pub failing: Vec<String>,
}

impl Readiness {
    /// Not ready yet: nothing checked.
    pub fn starting() -> Readiness {
        Readiness {
            ready: false,
            failing: vec!["starting".into()],
        }
    }
}

/// Combine check results (pure): ready when the service runs, is not stopping and every check
/// passed.
///
/// ```
/// let r = chassis::health::combine(true, false, vec![("db".into(), Err("no connection".into()))]);
/// assert!(!r.ready);
/// assert_eq!(r.failing, vec!["db: no connection".to_string()]);
/// assert!(chassis::health::combine(true, false, vec![("db".into(), Ok(()))]).ready);
/// assert_eq!(chassis::health::combine(true, true, vec![]).failing, vec!["stopping".to_string()]);
/// ```
pub fn combine(
    live: bool,
    stopping: bool,
    results: Vec<(String, Result<(), String>)>,
) -> Readiness {
    let mut failing = Vec::new();
    if stopping {
        failing.push("stopping".to_string());
    }
    if !live {
        failing.push("actors: the service's supervisor is not running".to_string());
    }
    for (name, r) in results {
        if let Err(e) = r {
            failing.push(format!("{name}: {e}"));
        }
    }
    Readiness {
        ready: failing.is_empty(),
        failing,
    }
}

/// Run every check (each bounded by [`CHECK_TIMEOUT`]).
pub(crate) async fn run_checks(checks: &[(String, Check)]) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::with_capacity(checks.len());
    for (name, check) in checks {
        let r = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        };
        out.push((name.clone(), r));
    }
    out
}
