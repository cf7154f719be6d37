//! Files mode, for Envoys without gRPC access to a node: the node writes its snapshot as
//! `DiscoveryResponse` files (binary protobuf, `.pb`) that Envoy reads through
//! `path_config_source` (`dctl proxy bootstrap --files DIR`):
//!
//! | file | holds |
//! |---|---|
//! | `DIR/cds.pb` | every cluster (their endpoints come from `eds/<cluster>.pb`) |
//! | `DIR/eds/<cluster>.pb` | one cluster's endpoints (Envoy wants one per EDS subscription) |
//! | `DIR/lds.pb` | the ingress listener on the node's `--xds-files-listen` address |
//! | `DIR/rds/<name>.pb` | the route configuration |
//!
//! Every file is written to a temporary name, fsync'd and renamed over the old one (Envoy
//! watches the paths for moves, so it never reads half a file), only when its content changed,
//! in make-before-break order: endpoints, clusters, routes, listener; files of resources that
//! are gone are deleted last.
//!
//! ```
//! use proxy_ctl::{files::FilesWriter, snapshot::build};
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = FilesWriter::new(dir.path(), "127.0.0.1:10000".parse().unwrap()).unwrap();
//! w.write(&build(&[], &[])).unwrap();
//! assert!(dir.path().join("cds.pb").exists() && dir.path().join("lds.pb").exists());
//! ```

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use prost::Message;

use crate::{
    envoy::{to_any, Target},
    snapshot::{Kind, Snapshot},
    ProxyError,
};

/// The file of a resource (CDS and LDS: one file for all; EDS and RDS: one per name).
pub fn path_of(dir: &Path, kind: Kind, name: &str) -> PathBuf {
    match kind {
        Kind::Cluster => dir.join("cds.pb"),
        Kind::Listener => dir.join("lds.pb"),
        Kind::Endpoints => dir.join("eds").join(format!("{name}.pb")),
        Kind::Routes => dir.join("rds").join(format!("{name}.pb")),
    }
}

/// Writes snapshots into a directory; remembers what it wrote, to write only changes.
#[derive(Debug)]
pub struct FilesWriter {
    dir: PathBuf,
    target: Target,
    /// Path -> version written.
    written: BTreeMap<PathBuf, String>,
}

fn err(what: &str, path: &Path, e: std::io::Error) -> ProxyError {
    ProxyError::Files(format!("{what} {}: {e}", path.display()))
}

impl FilesWriter {
    /// A writer for `dir` (created, with `eds/` and `rds/`), listener on `listen`.
    pub fn new(dir: &Path, listen: SocketAddr) -> Result<FilesWriter, ProxyError> {
        for d in [dir.to_path_buf(), dir.join("eds"), dir.join("rds")] {
            std::fs::create_dir_all(&d).map_err(|e| err("cannot create", &d, e))?;
        }
        Ok(FilesWriter {
            dir: dir.to_path_buf(),
            target: Target {
                listen,
                files: Some(dir.to_path_buf()),
            },
            written: BTreeMap::new(),
        })
    }

    fn put(
        &mut self,
        path: PathBuf,
        kind: Kind,
        version: &str,
        names: &[&str],
        snap: &Snapshot,
    ) -> Result<bool, ProxyError> {
        if self.written.get(&path).map(String::as_str) == Some(version) {
            return Ok(false);
        }
        let set = snap.of(kind);
        let resources = names
            .iter()
            .filter_map(|n| set.resources.get(*n))
            .map(|r| to_any(&r.spec, &self.target))
            .collect();
        let body = DiscoveryResponse {
            version_info: version.to_string(),
            resources,
            type_url: kind.type_url().to_string(),
            ..DiscoveryResponse::default()
        }
        .encode_to_vec();
        let parent = path.parent().unwrap_or(&self.dir);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{file_name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| err("cannot create", &tmp, e))?;
        f.write_all(&body)
            .map_err(|e| err("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| err("cannot sync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err("cannot rename onto", &path, e))?;
        self.written.insert(path, version.to_string());
        Ok(true)
    }

    /// Write what changed since the last call; returns how many files were (re)written or
    /// deleted.
    pub fn write(&mut self, snap: &Snapshot) -> Result<usize, ProxyError> {
        let mut n = 0;
        let mut keep = Vec::new();
        // Make before break: a file exists before the cluster or listener naming it.
        for kind in [Kind::Endpoints, Kind::Cluster, Kind::Routes, Kind::Listener] {
            let set = snap.of(kind);
            match kind {
                Kind::Cluster | Kind::Listener => {
                    let names: Vec<&str> = set.resources.keys().map(String::as_str).collect();
                    let path = path_of(&self.dir, kind, "");
                    n += usize::from(self.put(path.clone(), kind, &set.version, &names, snap)?);
                    keep.push(path);
                }
                Kind::Endpoints | Kind::Routes => {
                    for r in set.resources.values() {
                        let path = path_of(&self.dir, kind, &r.name);
                        let hash = r.hash.clone();
                        n += usize::from(self.put(path.clone(), kind, &hash, &[&r.name], snap)?);
                        keep.push(path);
                    }
                }
            }
        }
        // Files of resources that are gone go last, after nothing names them any more.
        let gone: Vec<PathBuf> = self
            .written
            .keys()
            .filter(|p| !keep.contains(p))
            .cloned()
            .collect();
        for p in gone {
            match std::fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err("cannot remove", &p, e)),
            }
            self.written.remove(&p);
        }
        Ok(n)
    }
}

/// The `xds-files` actor: writes the node's snapshot into the directory at start (an error
/// there fails the start, with the reason) and after every change.
pub struct FilesActor {
    pub(crate) dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) cell: crate::snapshot::SnapshotCell,
}

impl Clone for FilesActor {
    fn clone(&self) -> Self {
        FilesActor {
            dir: self.dir.clone(),
            listen: self.listen,
            cell: self.cell.clone(),
        }
    }
}

/// The `xds-files` actor takes no messages.
#[derive(Debug)]
pub enum FilesMsg {}

impl ractor::Message for FilesMsg {}

impl ractor::Actor for FilesActor {
    type Msg = FilesMsg;
    type State = tokio::task::JoinHandle<()>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<FilesMsg>,
        _: (),
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        let mut w = FilesWriter::new(&self.dir, self.listen)?;
        let mut rx = self.cell.subscribe();
        let first = rx.borrow_and_update().clone();
        w.write(&first)?;
        Ok(tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snap = rx.borrow_and_update().clone();
                if let Err(e) = w.write(&snap) {
                    tracing::error!(error = %e, "files mode: cannot write the snapshot");
                }
            }
        }))
    }

    async fn post_stop(
        &self,
        _: ractor::ActorRef<FilesMsg>,
        task: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        task.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{snapshot::build, PathMatch, Route};
    use envoy_types::pb::envoy::config::cluster::v3::{cluster::EdsClusterConfig, Cluster};
    use registry::service::{Health, Instance};

    fn inst(service: &str, port: u16) -> Instance {
        Instance {
            service: service.into(),
            id: format!("{service}{port}"),
            node: "n".into(),
            address: format!("127.0.0.1:{port}"),
            protocol: "http".into(),
            metadata: Default::default(),
            health: Health::Passing,
        }
    }

    fn read(path: &Path) -> DiscoveryResponse {
        DiscoveryResponse::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
    }

    #[test]
    fn writes_changes_only_names_files_in_clusters_and_deletes_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FilesWriter::new(dir.path(), "127.0.0.1:10000".parse().unwrap()).unwrap();
        let routes = [Route::new("r", PathMatch::Prefix("/".into()), "web")];
        let snap = build(&[inst("web", 1), inst("api", 2)], &routes);
        assert_eq!(w.write(&snap).unwrap(), 5, "cds, lds, 2 eds, 1 rds");
        let cds = read(&dir.path().join("cds.pb"));
        assert_eq!(cds.version_info, snap.clusters.version);
        assert_eq!(cds.resources.len(), 2);
        let c = Cluster::decode(cds.resources[1].value.as_slice()).unwrap();
        let Some(EdsClusterConfig {
            eds_config: Some(src),
            ..
        }) = c.eds_cluster_config
        else {
            panic!()
        };
        let want = path_of(dir.path(), Kind::Endpoints, &c.name);
        assert!(
            format!("{src:?}").contains(&*want.to_string_lossy()),
            "{src:?}"
        );
        assert!(want.exists());
        assert_eq!(w.write(&snap).unwrap(), 0, "nothing changed");
        // api goes: its endpoints file is deleted, cds rewritten
        let snap2 = build(&[inst("web", 1)], &routes);
        assert_eq!(w.write(&snap2).unwrap(), 2);
        assert!(!path_of(dir.path(), Kind::Endpoints, "api").exists());
        assert!(!dir.path().join(".cds.pb.tmp").exists());
    }
}
