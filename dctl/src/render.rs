//! Human-readable output.

use serde_json::Value;

/// Draw a tree JSON (`name`, `kind`, `status`, `restarts`, `children`) with box characters.
pub fn tree(node: &Value) -> String {
    let mut out = String::new();
    line(node, "", "", &mut out);
    out
}

fn describe(node: &Value) -> String {
    let s = |k: &str| {
        node.get(k)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let mut parts = vec![s("kind"), s("status")];
    if let Some(strategy) = node.get("strategy").and_then(Value::as_str) {
        parts.push(strategy.to_string());
    }
    let restarts = node.get("restarts").and_then(Value::as_u64).unwrap_or(0);
    if restarts > 0 {
        parts.push(format!("restarts: {restarts}"));
    }
    if let Some(host) = node.get("runs_on").and_then(Value::as_str) {
        parts.push(format!("on {host}"));
    }
    if let Some(from) = node.get("supervised_from").and_then(Value::as_str) {
        parts.push(format!("supervised from {from}"));
    }
    if let Some(reason) = node.get("reason").and_then(Value::as_str) {
        parts.push(format!("reason: {reason}"));
    }
    format!("{} ({})", s("name"), parts.join(", "))
}

fn line(node: &Value, first: &str, rest: &str, out: &mut String) {
    out.push_str(first);
    out.push_str(&describe(node));
    out.push('\n');
    let children = node
        .get("children")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let n = children.len();
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        line(
            child,
            &format!("{rest}{branch}"),
            &format!("{rest}{indent}"),
            out,
        );
    }
}

/// A table of cluster members.
pub fn members(nodes: &Value) -> String {
    let mut out = format!(
        "{:<16} {:<6} {:<9} {:<5} {:<22} {:<22}\n",
        "NAME", "STATE", "TRANSPORT", "LANE", "ADMIN", "GOSSIP"
    );
    for m in nodes.as_array().cloned().unwrap_or_default() {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let mut name = s("name");
        if m["self"] == true {
            name.push_str(" *");
        }
        let up = |k: &str| if m[k] == true { "up" } else { "down" };
        out.push_str(&format!(
            "{:<16} {:<6} {:<9} {:<5} {:<22} {:<22}\n",
            name,
            s("state"),
            up("connected"),
            up("lane"),
            s("admin_addr"),
            s("gossip_addr")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn marks_remote_children_and_the_actors_they_stand_for() {
        let t = json!({"name":"sup","kind":"supervisor","status":"running","restarts":0,
            "strategy":"one_for_one","children":[
              {"name":"w","kind":"worker","status":"running","restarts":1,"runs_on":"n3","children":[]}]});
        assert_eq!(
            super::tree(&t),
            "sup (supervisor, running, one_for_one)\n\
             └── w (worker, running, restarts: 1, on n3)\n"
        );
        let h = json!({"name":"w","kind":"worker","status":"running","restarts":0,
            "supervised_from":"n1/sup","children":[]});
        assert_eq!(
            super::tree(&h),
            "w (worker, running, supervised from n1/sup)\n"
        );
    }

    #[test]
    fn draws_nested_children_with_restarts() {
        let t = json!({"name":"root","kind":"supervisor","status":"running","restarts":0,
            "strategy":"one_for_one","children":[
              {"name":"a","kind":"worker","status":"running","restarts":2,"children":[]},
              {"name":"b","kind":"supervisor","status":"running","restarts":0,"children":[
                {"name":"c","kind":"worker","status":"restarting","restarts":1,"children":[]}]}]});
        assert_eq!(
            super::tree(&t),
            "root (supervisor, running, one_for_one)\n\
             ├── a (worker, running, restarts: 2)\n\
             └── b (supervisor, running)\n    \
             └── c (worker, restarting, restarts: 1)\n"
        );
    }
}
