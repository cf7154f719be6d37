//! Network partitions with iptables DROP rules between node addresses.
//!
//! Every node runs with a group id of its own, and every connection gets, on its first packet,
//! the connection mark of the node that opened it (its gid) (`-m owner --gid-owner G -j CONNMARK`). This
//! matters on loopback: a node listens on its alias (127.0.0.N) but its outgoing TCP connections
//! leave from 127.0.0.1, so addresses alone cannot say which node a packet belongs to. A cut
//! between nodes A and B drops every packet of a connection A opened that goes to or comes from
//! B's address, and the same for B's. Connections of the test's own clients carry no mark and
//! are never dropped (Jepsen's clients, too, reach every node).
//!
//! All rules live in a chain of the run's own, `DRAFT-CHAOS-<pid>`, jumped to from `OUTPUT`. The
//! [`Firewall`] removes it when dropped (also on panic); a run that was killed before it could
//! leaves a chain whose pid is gone, and the next run removes it first ([`sweep_leftovers`]).
//!
//! ```no_run
//! use chaos::net::{Firewall, Member};
//! let mut fw = Firewall::new(&[Member { ip: "127.0.0.2".into(), gid: 50_002 },
//!                              Member { ip: "127.0.0.3".into(), gid: 50_003 }])?;
//! fw.cut(&[(0, 1)])?;   // n1 and n2 cannot talk
//! fw.heal()?;
//! # Ok::<(), chaos::net::NetError>(())
//! ```

use std::process::Command;

/// Prefix of the chains this crate creates.
pub const CHAIN_PREFIX: &str = "DRAFT-CHAOS-";

/// A failure to change the rules.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `iptables` is not installed.
    #[error("iptables is not installed (apt-get install iptables; ./scripts/test.sh does it)")]
    Missing,
    /// A rule change was refused.
    #[error("iptables {args}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What iptables said.
        stderr: String,
    },
}

fn iptables(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("iptables")
        .arg("-w")
        .arg("5")
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetError::Missing,
            _ => NetError::Failed {
                args: args.join(" "),
                stderr: e.to_string(),
            },
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn list_rules() -> Result<String, NetError> {
    let out = Command::new("iptables")
        .args(["-w", "5", "-S"])
        .output()
        .map_err(|_| NetError::Missing)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn remove_chain(chain: &str) {
    // Bounded: one jump per run, a few attempts in case a crashed run inserted it twice.
    for _ in 0..8 {
        if iptables(&["-D", "OUTPUT", "-j", chain]).is_err() {
            break;
        }
    }
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

/// Remove the chains of runs whose process is gone; returns their names.
pub fn sweep_leftovers() -> Result<Vec<String>, NetError> {
    let rules = list_rules()?;
    let mut removed = Vec::new();
    for line in rules.lines() {
        let Some(chain) = line.strip_prefix("-N ") else {
            continue;
        };
        let Some(pid) = chain.strip_prefix(CHAIN_PREFIX) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            remove_chain(chain);
            removed.push(chain.to_string());
        }
    }
    Ok(removed)
}

/// A node as the firewall knows it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its loopback address.
    pub ip: String,
    /// The group id its process runs with.
    pub gid: u32,
}

/// The run's chain; removed on drop.
#[derive(Debug)]
pub struct Firewall {
    chain: String,
    members: Vec<Member>,
    cuts: Vec<Vec<String>>,
}

impl Firewall {
    /// Sweep leftovers, create the chain and the marking rules (before any node starts).
    pub fn new(members: &[Member]) -> Result<Firewall, NetError> {
        sweep_leftovers()?;
        let chain = format!("{CHAIN_PREFIX}{}", std::process::id());
        remove_chain(&chain);
        iptables(&["-N", &chain])?;
        let fw = Firewall {
            chain: chain.clone(),
            members: members.to_vec(),
            cuts: Vec::new(),
        };
        iptables(&["-I", "OUTPUT", "-j", &chain])?;
        // The mark is the node's gid: unique per run, so concurrent runs never match each
        // other's connections.
        for m in members {
            let gid = m.gid.to_string();
            let mark = gid.clone();
            iptables(&[
                "-A",
                &chain,
                "-m",
                "owner",
                "--gid-owner",
                &gid,
                "-m",
                "connmark",
                "--mark",
                "0",
                "-j",
                "CONNMARK",
                "--set-mark",
                &mark,
            ])?;
        }
        Ok(fw)
    }

    /// The chain's name.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    fn cut_rules(&self, a: usize, b: usize) -> Vec<Vec<String>> {
        let mut rules = Vec::new();
        for (x, y) in [(a, b), (b, a)] {
            let mark = self.members[x].gid.to_string();
            let ip = &self.members[y].ip;
            for dir in ["-d", "-s"] {
                rules.push(
                    ["-m", "connmark", "--mark", &mark, dir, ip, "-j", "DROP"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                );
            }
        }
        rules
    }

    /// Drop all traffic between each pair of node indexes.
    pub fn cut(&mut self, pairs: &[(usize, usize)]) -> Result<(), NetError> {
        for &(a, b) in pairs {
            for rule in self.cut_rules(a, b) {
                let mut args: Vec<&str> = vec!["-A", &self.chain];
                args.extend(rule.iter().map(String::as_str));
                iptables(&args)?;
                self.cuts.push(rule);
            }
        }
        Ok(())
    }

    /// Remove every cut (the marking rules stay).
    pub fn heal(&mut self) -> Result<(), NetError> {
        let mut first_err = None;
        for rule in std::mem::take(&mut self.cuts) {
            let mut args: Vec<&str> = vec!["-D", &self.chain];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = iptables(&args) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Rules currently cutting links.
    pub fn active_cuts(&self) -> usize {
        self.cuts.len()
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        remove_chain(&self.chain);
    }
}

/// Whether the run's chain exists (for tests of the cleanup).
pub fn chain_exists(chain: &str) -> bool {
    list_rules().is_ok_and(|r| r.lines().any(|l| l == format!("-N {chain}")))
}
