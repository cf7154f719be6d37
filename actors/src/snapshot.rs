use serde::{Deserialize, Serialize};

/// Whether a tree node is a supervisor or a worker.
pub use crate::child::ChildKind;

/// The state of one node of a supervision tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    /// The actor is alive.
    Running,
    /// The actor exited and a restart is pending (backoff).
    Restarting,
    /// The actor is not running and will not be restarted unless asked
    /// (a transient child that exited normally, or a terminated child).
    Stopped,
    /// Given up on: the child exceeded its own restart intensity (see
    /// [`crate::IntensityScope::PerChild`]); the reason says why. Not restarted unless asked.
    Failed,
    /// A supervisor that did not answer the snapshot request in time.
    Unresponsive,
}

/// A serializable view of a supervision tree, rooted at one supervisor or worker.
///
/// ```
/// use actors::{ChildKind, ChildStatus, TreeSnapshot};
/// let leaf = TreeSnapshot::leaf("e1", ChildKind::Worker, ChildStatus::Running);
/// let json = serde_json::to_value(&leaf).unwrap();
/// assert_eq!(json["kind"], "worker");
/// assert_eq!(json["restarts"], 0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeSnapshot {
    /// The child id in its supervisor (or the root's name).
    pub name: String,
    /// The ractor actor id (`node.local`), when the actor is alive.
    pub actor_id: Option<String>,
    /// The registered actor name, when it has one.
    pub actor_name: Option<String>,
    /// Supervisor or worker.
    pub kind: ChildKind,
    /// Running, restarting, stopped...
    pub status: ChildStatus,
    /// How many times the supervisor restarted this child.
    pub restarts: u32,
    /// Restart type (`permanent`, `transient`, `temporary`), when the node has a parent.
    pub restart: Option<String>,
    /// Strategy of a supervisor node.
    pub strategy: Option<String>,
    /// Children, in start order.
    pub children: Vec<TreeSnapshot>,
    /// Why the node is not running, when it failed or was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a child supervised here that runs on another node (a remote child): that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<String>,
    /// For an actor that runs here as another node's remote child: `NODE/SUPERVISOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervised_from: Option<String>,
    /// Live figures of a named actor (filled in by the runtime's inspector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<LiveStats>,
}

/// Live figures of one actor, as the runtime measures them while it runs.
///
/// The mailbox length is read when the snapshot is taken; rates and handling times are over the
/// last few seconds (`window_s`); `handled` counts since the actor was first spawned under its
/// name (restarts included).
///
/// ```
/// let s = actors::LiveStats { mailbox: 3, ..Default::default() };
/// let json = serde_json::to_value(&s).unwrap();
/// assert_eq!(json["mailbox"], 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// Messages waiting in the actor's mailbox.
    pub mailbox: u64,
    /// An estimate of the memory the actor holds, in bytes, where one is available (actors the
    /// runtime spawned): its fixed runtime cost, the size of its state and of its queued
    /// messages (shallow: what the types say), plus the heap bytes the actor reports for its
    /// state when it has a memory hook (`memory_reported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Whether `memory_bytes` includes what the actor reported about its state (else it is the
    /// shallow estimate only).
    #[serde(default)]
    pub memory_reported: bool,
    /// Messages handled in total (0 for actors the runtime does not time).
    #[serde(default)]
    pub handled: u64,
    /// Messages handled per second over the window.
    #[serde(default)]
    pub rate: f64,
    /// Mean handling time over the window, in microseconds.
    #[serde(default)]
    pub mean_us: f64,
    /// 99th percentile of the handling time over the window, in microseconds (an upper bound:
    /// the edge of its histogram bucket, at most 25 % above).
    #[serde(default)]
    pub p99_us: f64,
    /// Seconds since the actor last (re)started.
    #[serde(default)]
    pub uptime_s: f64,
    /// The window the rate and times are measured over, in seconds (0 when not timed).
    #[serde(default)]
    pub window_s: f64,
    /// Whether the runtime times this actor's handler (named actors it spawned itself).
    #[serde(default)]
    pub timed: bool,
    /// The last failures of the actor (newest last): an error a handler returned, or a panic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

impl TreeSnapshot {
    /// A childless node.
    pub fn leaf(name: impl Into<String>, kind: ChildKind, status: ChildStatus) -> Self {
        TreeSnapshot {
            name: name.into(),
            actor_id: None,
            actor_name: None,
            kind,
            status,
            restarts: 0,
            restart: None,
            strategy: None,
            children: Vec::new(),
            reason: None,
            runs_on: None,
            supervised_from: None,
            stats: None,
        }
    }

    /// Depth-first search for the first node with this name.
    pub fn find(&self, name: &str) -> Option<&TreeSnapshot> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Depth-first visit of every node, mutably (used to annotate a snapshot).
    pub fn visit_mut(&mut self, f: &mut impl FnMut(&mut TreeSnapshot)) {
        f(self);
        for c in &mut self.children {
            c.visit_mut(f);
        }
    }

    /// Number of running nodes in this tree (including this one).
    pub fn count_running(&self) -> usize {
        let me = usize::from(self.status == ChildStatus::Running);
        me + self
            .children
            .iter()
            .map(|c| c.count_running())
            .sum::<usize>()
    }
}
