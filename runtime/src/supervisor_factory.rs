//! The built-in factory `supervisor`: a supervisor declared in JSON, whose children are started
//! from factories, on this node or, with `on`, as remote children on other nodes
//! ([`crate::Placement`]).
//!
//! ```json
//! {"strategy": "one_for_one", "max_restarts": 3, "period_ms": 5000,
//!  "children": [{"id": "db", "factory": "echo"},
//!               {"id": "worker", "factory": "echo", "on": "other", "restart": "transient"}]}
//! ```
//!
//! `strategy` (default `one_for_one`), `max_restarts` / `period_ms` (default 3 in 5 000 ms),
//! and per child `id` (its name, cluster-wide), `factory`, `args` (default null), `on` (default:
//! this node, as an ordinary child) and `restart` (default `permanent`). Unknown fields are
//! refused, so a typo is an error, not a silent default.

use std::{sync::Weak, time::Duration};

use actors::{ChildSpec, Intensity, Restart, Strategy, SupervisorSpec};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    node::{Inner, Node},
    remote_child::Placement,
};

/// Most children one JSON supervisor may declare.
const MAX_CHILDREN: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorArgs {
    #[serde(default = "one_for_one")]
    strategy: Strategy,
    #[serde(default = "three")]
    max_restarts: u32,
    #[serde(default = "five_seconds")]
    period_ms: u64,
    children: Vec<ChildArgs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildArgs {
    id: String,
    factory: String,
    #[serde(default)]
    args: Value,
    #[serde(default)]
    on: Option<Placement>,
    #[serde(default = "permanent")]
    restart: Restart,
}

fn one_for_one() -> Strategy {
    Strategy::OneForOne
}
fn three() -> u32 {
    3
}
fn five_seconds() -> u64 {
    5_000
}
fn permanent() -> Restart {
    Restart::Permanent
}

/// The child spec of a JSON supervisor named `name`, or what is wrong with `args`.
pub(crate) fn build(node: &Weak<Inner>, name: &str, args: Value) -> Result<ChildSpec, String> {
    let args: SupervisorArgs =
        serde_json::from_value(args).map_err(|e| format!("bad supervisor arguments: {e}"))?;
    if args.children.len() > MAX_CHILDREN {
        return Err(format!(
            "a supervisor declares at most {MAX_CHILDREN} children, not {}",
            args.children.len()
        ));
    }
    if args.period_ms == 0 {
        return Err("period_ms must be at least 1".into());
    }
    let node = node
        .upgrade()
        .map(|inner| Node { inner })
        .ok_or("node is stopping")?;
    let mut spec = SupervisorSpec::new(args.strategy).intensity(Intensity {
        max_restarts: args.max_restarts,
        period: Duration::from_millis(args.period_ms),
    });
    let mut seen = std::collections::HashSet::new();
    for c in args.children {
        if !seen.insert(c.id.clone()) {
            return Err(format!("two children are named '{}'", c.id));
        }
        if c.id == name {
            return Err(format!(
                "child '{}' cannot have its supervisor's name",
                c.id
            ));
        }
        let child = match c.on {
            Some(placement) => node.remote_child(&c.id, &c.factory, c.args, placement),
            None => node
                .factory_child_spec(&c.factory, &c.id, c.args)
                .map_err(|e| format!("child '{}': {e}", c.id))?,
        };
        spec = spec.child(child.restart(c.restart));
    }
    Ok(ChildSpec::supervisor(name, Some(name.to_string()), spec).restart(Restart::Transient))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_bad_values_are_refused() {
        let none = Weak::new();
        let err = |v: Value| build(&none, "s", v).unwrap_err();
        assert!(
            err(serde_json::json!({"children": [], "stratgy": "one_for_all"}))
                .contains("unknown field `stratgy`"),
        );
        assert!(err(
            serde_json::json!({"children": [{"id": "a", "factory": "echo", "on": "zone:x"}]})
        )
        .contains("placement 'zone:x' is not any"));
        assert!(
            err(serde_json::json!({"strategy": "one_for_none", "children": []}))
                .contains("unknown variant `one_for_none`")
        );
        assert_eq!(
            err(serde_json::json!({"period_ms": 0, "children": []})),
            "period_ms must be at least 1"
        );
        assert!(err(serde_json::json!({})).contains("missing field `children`"));
    }
}
