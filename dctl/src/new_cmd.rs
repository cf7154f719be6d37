//! `dctl new NAME [--path DIR]`: scaffold a service crate on the chassis (the README's quick
//! start, `samples/src/bin/hello.rs`, named after the service).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The quick start, compiled as a sample: the template of every new service.
const MAIN: &str = include_str!("../../samples/src/bin/hello.rs");

/// Where this repository is (the chassis is not on crates.io: new crates depend on it by path).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A valid crate and service name: lowercase letters, digits, `-`, starting with a letter.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("'{name}' is not a service name: use 1-64 lowercase letters, digits and '-', starting with a letter");
    }
    Ok(())
}

/// The files of a new service crate (pure). `vendor` is the repository's `vendor/` directory:
/// the crate patches the same crates the runtime does.
pub fn files(name: &str, chassis: &Path, vendor: &Path) -> Vec<(&'static str, String)> {
    let main = MAIN
        .replace(
            "//! The README's quick start:",
            &format!("//! The {name} service:"),
        )
        .replace(
            "Service::builder(\"hello\")",
            &format!("Service::builder(\"{name}\")"),
        )
        .replace("config/hello", &format!("config/{name}"));
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
chassis = {{ path = "{chassis}" }}
tokio = {{ version = "1", features = ["full"] }}
serde = {{ version = "1", features = ["derive"] }}
axum = "0.8"

# The runtime seals gossip with chitchat's envelope encoding, which the published crate keeps
# private, reads actors' mailbox lengths, which ractor does not expose, and finds named actors
# through its own directory instead of ractor_cluster's advertisement of every actor (see the
# Draft repository's vendor/*/PATCHED.md).
[patch.crates-io]
chitchat = {{ path = "{vendor}/chitchat" }}
ractor = {{ path = "{vendor}/ractor" }}
ractor_cluster = {{ path = "{vendor}/ractor_cluster" }}

[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
debug = false

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#,
        chassis = chassis.display(),
        vendor = vendor.display(),
    );
    vec![
        ("Cargo.toml", cargo),
        ("src/main.rs", main),
        (".gitignore", "/target\n/.dctl\n".to_string()),
    ]
}

/// Write a new service crate `name` in `parent/name`; returns its directory.
pub fn run(name: &str, parent: Option<&Path>) -> Result<PathBuf> {
    check_name(name)?;
    let dir = parent.unwrap_or(Path::new(".")).join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let repo = repo();
    let chassis = repo
        .join("chassis")
        .canonicalize()
        .with_context(|| format!("the chassis crate is not at {} (dctl new needs the Draft repository dctl was built from)", repo.join("chassis").display()))?;
    let vendor = repo
        .join("vendor")
        .canonicalize()
        .context("the repository's vendor/ directory is missing")?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, text) in files(name, &chassis, &vendor) {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The repository's lock file pins the versions the runtime is built and tested with.
    if let Ok(lock) = std::fs::read(repo.join("Cargo.lock")) {
        std::fs::write(dir.join("Cargo.lock"), lock).context("cannot write Cargo.lock")?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_named_after_the_service() {
        let f = files("demo", Path::new("/c"), Path::new("/v"));
        let main = &f.iter().find(|(n, _)| *n == "src/main.rs").unwrap().1;
        assert!(main.contains("Service::builder(\"demo\")"));
        assert!(main.contains("\"config/demo\""));
        assert!(!main.contains("hello\")"));
        let cargo = &f[0].1;
        assert!(cargo.contains("name = \"demo\"") && cargo.contains("chassis = { path = \"/c\" }"));
        // the same patched crates as the runtime, or the crate would not build against it
        assert!(
            cargo.contains("chitchat = { path = \"/v/chitchat\" }"),
            "{cargo}"
        );
        assert!(
            cargo.contains("ractor = { path = \"/v/ractor\" }"),
            "{cargo}"
        );
        assert!(
            cargo.contains("ractor_cluster = { path = \"/v/ractor_cluster\" }"),
            "{cargo}"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "Demo", "1x", "a_b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("demo-2").unwrap();
    }
}
