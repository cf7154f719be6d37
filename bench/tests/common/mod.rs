//! What every quick benchmark test asserts about its targets.

use bench::checks::Checks;

/// `checks` are exactly `names`, in order, each with a finite measured value, and the printed
/// report `text` has one table row per check ending in its verdict (PASS or MISS), no more.
pub fn assert_checks(checks: &Checks, text: &str, names: &[&str]) {
    let got: Vec<&str> = checks.iter().map(|c| c.metric.as_str()).collect();
    assert_eq!(got, names, "the targets of:\n{text}");
    for c in checks.iter() {
        assert!(
            c.value.is_finite(),
            "{}: {} is not a number",
            c.metric,
            c.value
        );
        assert_eq!(c.pass, c.target.met_by(c.value), "{}: verdict", c.metric);
    }
    let rows = text
        .lines()
        .filter(|l| matches!(l.split_whitespace().last(), Some("PASS" | "MISS")))
        .count();
    assert_eq!(rows, checks.len(), "one verdict row per target in:\n{text}");
    let v = checks.verdicts();
    assert_eq!(v.pass + v.miss, checks.len());
}
