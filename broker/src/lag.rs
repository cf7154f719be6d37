//! How far behind its durable channel each consumer group is (pure): a group's lag is the
//! channel's head (its log length, the next offset to be written) less the group's committed
//! next offset. Groups commit at least every few events and when idle, so the lag seen is at
//! most that many events above the true one.

use std::collections::BTreeMap;

use serde::Serialize;

/// One group's position on a durable channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    /// The queue group.
    pub group: String,
    /// The next offset it will read.
    pub committed: u64,
    /// Events appended that it has not committed: `head - committed` (0 if it is past the head,
    /// which a log truncated by hand could cause).
    pub lag: u64,
}

/// Every group's lag on a channel whose head is `head`, by group name.
///
/// ```
/// use std::collections::BTreeMap;
/// let committed = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 10)]);
/// let lags = broker::lags(10, &committed);
/// assert_eq!((lags[0].group.as_str(), lags[0].lag), ("a", 7));
/// assert_eq!(lags[1].lag, 0);
/// ```
pub fn lags(head: u64, committed: &BTreeMap<String, u64>) -> Vec<GroupLag> {
    committed
        .iter()
        .map(|(g, c)| GroupLag {
            group: g.clone(),
            committed: *c,
            lag: head.saturating_sub(*c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_head_less_committed_and_never_negative() {
        let committed = BTreeMap::from([
            ("behind".to_string(), 2),
            ("caught-up".to_string(), 5),
            ("ahead".to_string(), 9),
        ]);
        let l = lags(5, &committed);
        let by: BTreeMap<_, _> = l
            .iter()
            .map(|g| (g.group.as_str(), (g.committed, g.lag)))
            .collect();
        assert_eq!(by["behind"], (2, 3));
        assert_eq!(by["caught-up"], (5, 0));
        assert_eq!(by["ahead"], (9, 0));
        assert!(lags(7, &BTreeMap::new()).is_empty());
    }
}
