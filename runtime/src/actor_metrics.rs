//! The `draft_actor_*` metric families: live figures per named actor, with bounded label
//! cardinality. At most [`MAX_LABELLED`] actors get an `actor="NAME"` series (the busiest, by
//! messages handled and mailbox length); the rest are summed into one `actor="_other"` series.
//! Actors are labelled by name only, never by pid.

use crate::actor_stats::MetricRow;

/// Named actors with a series of their own.
pub(crate) const MAX_LABELLED: usize = 200;

/// The label value of the aggregate series.
pub(crate) const OTHER: &str = "_other";

/// A label value with `\`, `"` and newlines escaped (OpenMetrics).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric family: name, type, help, and the value of a row.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MetricRow) -> String,
);

/// OpenMetrics text (without `# EOF`) for these rows.
pub(crate) fn render(mut rows: Vec<MetricRow>) -> String {
    if rows.is_empty() {
        return String::new();
    }
    // Busiest first; the name breaks ties so the chosen set is stable between scrapes.
    rows.sort_by(|a, b| {
        (b.handled + b.mailbox)
            .cmp(&(a.handled + a.mailbox))
            .then_with(|| a.name.cmp(&b.name))
    });
    let rest = if rows.len() > MAX_LABELLED {
        rows.split_off(MAX_LABELLED)
    } else {
        Vec::new()
    };
    if !rest.is_empty() {
        let mut other = MetricRow {
            name: OTHER.to_string(),
            mailbox: 0,
            handled: 0,
            failures: 0,
            memory: 0,
            derived: Default::default(),
        };
        for r in &rest {
            other.mailbox += r.mailbox;
            other.memory += r.memory;
            other.handled += r.handled;
            other.failures += r.failures;
            other.derived.rate += r.derived.rate;
            // the aggregate's p99 is the worst of its members' (an upper bound)
            other.derived.p99_us = other.derived.p99_us.max(r.derived.p99_us);
        }
        let n: f64 = rest.iter().map(|r| r.derived.rate).sum();
        if n > 0.0 {
            other.derived.mean_us = rest
                .iter()
                .map(|r| r.derived.mean_us * r.derived.rate)
                .sum::<f64>()
                / n;
        }
        rows.push(other);
    }
    let families: [Family; 7] = [
        (
            "draft_actor_mailbox",
            "gauge",
            "Messages waiting in a named actor's mailbox",
            |r| r.mailbox.to_string(),
        ),
        (
            "draft_actor_messages_handled",
            "counter",
            "Messages handled by a named actor",
            |r| r.handled.to_string(),
        ),
        (
            "draft_actor_messages_per_second",
            "gauge",
            "Messages a named actor handled per second over the last seconds",
            |r| format!("{:.3}", r.derived.rate),
        ),
        (
            "draft_actor_handling_mean_seconds",
            "gauge",
            "Mean handling time of a named actor's messages over the last seconds",
            |r| format!("{:.9}", r.derived.mean_us / 1e6),
        ),
        (
            "draft_actor_handling_p99_seconds",
            "gauge",
            "99th percentile of a named actor's handling time over the last seconds (bucket edge)",
            |r| format!("{:.9}", r.derived.p99_us / 1e6),
        ),
        (
            "draft_actor_failures_recent",
            "gauge",
            "Handler failures a named actor had recently (the last five are kept)",
            |r| r.failures.to_string(),
        ),
        (
            "draft_actor_memory_bytes",
            "gauge",
            "Memory a named actor holds, estimated: runtime cost, state and queued messages by size, plus what its memory hook reports",
            |r| r.memory.to_string(),
        ),
    ];
    let mut out = String::new();
    for (family, kind, help, value) in families {
        out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n"));
        let sample = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.to_string()
        };
        for r in &rows {
            out.push_str(&format!(
                "{sample}{{actor=\"{}\"}} {}\n",
                escape(&r.name),
                value(r)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor_stats::Derived;

    fn row(name: &str, handled: u64) -> MetricRow {
        MetricRow {
            name: name.into(),
            mailbox: 1,
            handled,
            failures: 0,
            memory: 1000,
            derived: Derived {
                rate: 2.0,
                mean_us: 10.0,
                p99_us: 20.0,
                window_s: 10.0,
            },
        }
    }

    #[test]
    fn one_series_per_named_actor() {
        let text = render(vec![row("a", 5), row("b", 7)]);
        assert!(
            text.contains("draft_actor_messages_handled_total{actor=\"a\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("draft_actor_mailbox{actor=\"b\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("draft_actor_handling_p99_seconds{actor=\"a\"} 0.000020000\n"));
        assert!(text.contains("# TYPE draft_actor_messages_handled counter\n"));
        assert!(text.contains("draft_actor_memory_bytes{actor=\"b\"} 1000\n"));
        assert!(!text.contains(OTHER));
    }

    #[test]
    fn past_the_cap_the_quiet_ones_are_summed_into_other() {
        let rows: Vec<MetricRow> = (0..MAX_LABELLED + 50)
            .map(|i| row(&format!("a{i}"), i as u64))
            .collect();
        let text = render(rows);
        let series = text
            .lines()
            .filter(|l| l.starts_with("draft_actor_mailbox{"))
            .count();
        assert_eq!(series, MAX_LABELLED + 1);
        // the 50 quietest (handled 0..49) are in _other: 50 mailboxes of 1, sum of 0..49 handled
        assert!(
            text.contains("draft_actor_mailbox{actor=\"_other\"} 50\n"),
            "{text}"
        );
        assert!(text.contains("draft_actor_messages_handled_total{actor=\"_other\"} 1225\n"));
        assert!(text.contains("draft_actor_memory_bytes{actor=\"_other\"} 50000\n"));
        assert!(text.contains(&format!("{{actor=\"a{}\"}}", MAX_LABELLED + 49)));
        assert!(!text.contains("{actor=\"a0\"}"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(vec![row("x\"y", 1)]);
        assert!(text.contains("{actor=\"x\\\"y\"}"), "{text}");
    }

    #[test]
    fn nothing_to_say_without_actors() {
        assert_eq!(render(Vec::new()), "");
    }
}
