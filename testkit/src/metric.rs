//! One sample of a Prometheus text exposition (`GET /metrics`): an error when it is absent or
//! not a number, so a renamed or missing metric fails the caller instead of reading 0.

use crate::{Error, Result};

/// The value of the sample `name` (with its labels, e.g. `a_total{k="v"}`, if it has any).
pub fn sample(text: &str, name: &str) -> Result<f64> {
    let value = find(text, name)?;
    value.parse().map_err(|_| Error::BadMetric {
        name: name.to_string(),
        value: value.to_string(),
        kind: "a number",
    })
}

/// The value of the sample `name` as a count (a counter or gauge holding a whole number).
pub fn count(text: &str, name: &str) -> Result<u64> {
    let value = find(text, name)?;
    value.parse().map_err(|_| Error::BadMetric {
        name: name.to_string(),
        value: value.to_string(),
        kind: "a count",
    })
}

/// The text of the sample `name`'s value.
fn find<'a>(text: &'a str, name: &str) -> Result<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(str::trim)
        .ok_or_else(|| Error::MissingMetric {
            name: name.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_total A.\n# TYPE a_total counter\na_total 7\n\
                        a_total_extra 9\nb{k=\"v\"} 2.5\nc 1e3\nd x\n";

    #[test]
    fn reads_the_named_sample_only() {
        assert_eq!(count(TEXT, "a_total").expect("present"), 7);
        assert_eq!(sample(TEXT, "b{k=\"v\"}").expect("present"), 2.5);
        assert_eq!(sample(TEXT, "c").expect("present"), 1000.0);
    }

    #[test]
    fn missing_or_malformed_is_an_error_never_zero() {
        assert!(matches!(count(TEXT, "a"), Err(Error::MissingMetric { .. })));
        assert!(matches!(
            count(TEXT, "b{k=\"v\"}"),
            Err(Error::BadMetric { .. })
        ));
        assert!(matches!(sample(TEXT, "d"), Err(Error::BadMetric { .. })));
        assert!(matches!(
            sample("", "a_total"),
            Err(Error::MissingMetric { .. })
        ));
    }
}
