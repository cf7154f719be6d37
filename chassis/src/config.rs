//! A service's typed configuration: one KV key holding JSON, read at start and re-applied live
//! on every change. A value that does not parse or fails the service's validation is refused:
//! the old configuration stays in force, and the refusal is logged, counted
//! (`chassis_config_rejected_total`), shown on `GET /service` and in the service's registry
//! metadata (`config_error`).

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::watch;

/// Checks a parsed configuration; `Err` says what is wrong.
pub type Validator<C> = Arc<dyn Fn(&C) -> Result<(), String> + Send + Sync>;

/// Parse and validate a raw KV value (pure). A missing key means `default`.
///
/// ```
/// #[derive(Clone, Debug, PartialEq, serde::Deserialize)]
/// struct Cfg { limit: u32 }
/// let check = |c: &Cfg| if c.limit == 0 { Err("limit must be > 0".to_string()) } else { Ok(()) };
/// let default = Cfg { limit: 1 };
/// assert_eq!(chassis::parse_config(None, &default, &check), Ok(Cfg { limit: 1 }));
/// assert_eq!(chassis::parse_config(Some(r#"{"limit":5}"#), &default, &check), Ok(Cfg { limit: 5 }));
/// assert!(chassis::parse_config(Some(r#"{"limit":0}"#), &default, &check).unwrap_err().contains("limit must be > 0"));
/// assert!(chassis::parse_config(Some("{"), &default, &check).unwrap_err().starts_with("not valid JSON"));
/// ```
pub fn parse_config<C: DeserializeOwned + Clone>(
    raw: Option<&str>,
    default: &C,
    validate: &(dyn Fn(&C) -> Result<(), String> + Send + Sync),
) -> Result<C, String> {
    let cfg = match raw {
        None => default.clone(),
        Some(s) => serde_json::from_str::<C>(s)
            .map_err(|e| format!("not valid JSON for the configuration: {e}"))?,
    };
    validate(&cfg).map_err(|e| format!("invalid: {e}"))?;
    Ok(cfg)
}

/// How the live configuration is doing (`GET /service`, registry metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigStatus {
    /// The KV key.
    pub key: String,
    /// Changes applied since start (the first read included).
    pub applied: u64,
    /// Changes refused since start.
    pub rejected: u64,
    /// Why the last refused value was refused, while the key still holds it.
    pub error: Option<String>,
}

/// The service's current configuration, kept up to date from its KV key.
///
/// ```
/// # #[derive(Clone, serde::Deserialize)] struct Cfg { greeting: String }
/// # async fn f(cfg: chassis::LiveConfig<Cfg>) {
/// let mut cfg = cfg;
/// println!("now: {}", cfg.get().greeting);
/// let next = cfg.changed().await; // the next accepted value
/// # let _ = next;
/// # }
/// ```
pub struct LiveConfig<C> {
    rx: watch::Receiver<Arc<C>>,
    status: Arc<Mutex<ConfigStatus>>,
}

impl<C> Clone for LiveConfig<C> {
    fn clone(&self) -> Self {
        LiveConfig {
            rx: self.rx.clone(),
            status: self.status.clone(),
        }
    }
}

impl<C> fmt::Debug for LiveConfig<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveConfig")
            .field("status", &self.status())
            .finish()
    }
}

impl<C> LiveConfig<C> {
    /// The configuration in force.
    pub fn get(&self) -> Arc<C> {
        self.rx.borrow().clone()
    }

    /// Wait for the next accepted change and return it (`None`: the service is stopping).
    pub async fn changed(&mut self) -> Option<Arc<C>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }

    /// A receiver, for `tokio::select!` loops.
    pub fn receiver(&self) -> watch::Receiver<Arc<C>> {
        self.rx.clone()
    }

    /// Applied and refused changes, and the last refusal.
    pub fn status(&self) -> ConfigStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running side of a live configuration: applies or refuses each raw value.
pub(crate) struct ConfigApplier<C> {
    tx: watch::Sender<Arc<C>>,
    status: Arc<Mutex<ConfigStatus>>,
    default: C,
    validate: Validator<C>,
    changes: watch::Sender<u64>,
}

impl<C: DeserializeOwned + Clone + Send + Sync + 'static> ConfigApplier<C> {
    /// The first value: a refused one fails the start (no silent fallback to the default).
    pub(crate) fn first(
        key: &str,
        raw: Option<&str>,
        default: C,
        validate: Validator<C>,
        changes: watch::Sender<u64>,
    ) -> Result<(ConfigApplier<C>, LiveConfig<C>), String> {
        let cfg = parse_config(raw, &default, &*validate)?;
        let (tx, rx) = watch::channel(Arc::new(cfg));
        let status = Arc::new(Mutex::new(ConfigStatus {
            key: key.to_string(),
            applied: 1,
            ..Default::default()
        }));
        let live = LiveConfig {
            rx,
            status: status.clone(),
        };
        Ok((
            ConfigApplier {
                tx,
                status,
                default,
                validate,
                changes,
            },
            live,
        ))
    }

    /// Apply a new raw value, or refuse it and keep the old configuration.
    pub(crate) fn apply(&self, raw: Option<&str>) -> Result<(), String> {
        let result = parse_config(raw, &self.default, &*self.validate);
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(cfg) => {
                    st.applied += 1;
                    st.error = None;
                    self.tx.send_replace(Arc::new(cfg.clone()));
                    tracing::info!(key = %st.key, "configuration applied");
                }
                Err(e) => {
                    st.rejected += 1;
                    st.error = Some(e.clone());
                    tracing::warn!(key = %st.key, "configuration refused, keeping the old one: {e}");
                }
            }
        }
        self.changes.send_modify(|n| *n += 1);
        result.map(|_| ())
    }

    pub(crate) fn status(&self) -> Arc<Mutex<ConfigStatus>> {
        self.status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    struct Cfg {
        limit: u32,
    }

    fn applier() -> (ConfigApplier<Cfg>, LiveConfig<Cfg>) {
        let (changes, _) = watch::channel(0);
        let check: Validator<Cfg> = Arc::new(|c: &Cfg| {
            if c.limit == 0 {
                Err("limit must be > 0".into())
            } else {
                Ok(())
            }
        });
        ConfigApplier::first(
            "config/x",
            Some(r#"{"limit":2}"#),
            Cfg { limit: 1 },
            check,
            changes,
        )
        .unwrap()
    }

    #[test]
    fn a_refused_value_keeps_the_old_configuration_and_is_reported() {
        let (a, live) = applier();
        assert_eq!(live.get().limit, 2);
        assert!(a.apply(Some(r#"{"limit":0}"#)).is_err());
        assert_eq!(live.get().limit, 2, "old configuration kept");
        let st = live.status();
        assert_eq!((st.applied, st.rejected), (1, 1));
        assert_eq!(st.error.as_deref(), Some("invalid: limit must be > 0"));
        a.apply(Some(r#"{"limit":9}"#)).unwrap();
        assert_eq!(live.get().limit, 9);
        assert_eq!(
            live.status().error,
            None,
            "an accepted value clears the error"
        );
    }

    #[test]
    fn a_deleted_key_means_the_default() {
        let (a, live) = applier();
        a.apply(None).unwrap();
        assert_eq!(live.get().limit, 1);
    }

    #[test]
    fn a_bad_first_value_is_an_error() {
        let (changes, _) = watch::channel(0);
        let ok: Validator<Cfg> = Arc::new(|_| Ok(()));
        let Err(err) = ConfigApplier::first("k", Some("nope"), Cfg { limit: 1 }, ok, changes)
        else {
            panic!("a bad first value was accepted");
        };
        assert!(err.starts_with("not valid JSON"), "{err}");
    }
}
