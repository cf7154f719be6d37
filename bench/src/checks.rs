//! The targets of a benchmark: each measured figure with its bound and verdict (PASS/MISS),
//! collected in one [`Checks`] that prints the target table, serialises as a JSON list and
//! counts the verdicts. Targets are reported, never asserted.

use std::{fmt, ops::Deref};

use serde::Serialize;

use crate::stats::Limit;

/// One figure checked against its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What, e.g. `"call p50 64 B"`.
    pub metric: String,
    /// The measured value (a ratio, a time, a size...).
    pub value: f64,
    /// Its target.
    pub target: Limit,
    /// Whether the value meets the target.
    pub pass: bool,
}

impl Check {
    /// `"PASS"` or `"MISS"`.
    pub fn verdict(&self) -> &'static str {
        if self.pass {
            "PASS"
        } else {
            "MISS"
        }
    }
}

/// How many targets were met and missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Verdicts {
    /// Targets met.
    pub pass: usize,
    /// Targets missed.
    pub miss: usize,
}

/// Column widths of [`Checks::table`]: `target  value  limit  verdict`, one row per check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStyle {
    /// Width of the name column (left-aligned).
    pub name: usize,
    /// Width of the value column (right-aligned).
    pub value: usize,
    /// Decimals of the value.
    pub decimals: usize,
    /// Width of the limit column (right-aligned).
    pub limit: usize,
    /// Width of the verdict in a row (right-aligned; the header's is 8 wide).
    pub verdict: usize,
}

/// Every target of one benchmark run, in the order they were added. Derefs to the list (and
/// serialises as it).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct Checks(Vec<Check>);

impl Checks {
    /// No targets yet.
    pub fn new() -> Checks {
        Checks(Vec::new())
    }

    /// Check `value` against `target` under the name `metric`; whether it passed.
    pub fn add(&mut self, metric: impl Into<String>, value: f64, target: Limit) -> bool {
        let pass = target.met_by(value);
        self.0.push(Check {
            metric: metric.into(),
            value,
            target,
            pass,
        });
        pass
    }

    /// The check named `metric`.
    pub fn get(&self, metric: &str) -> Option<&Check> {
        self.0.iter().find(|c| c.metric == metric)
    }

    /// The target and verdict cells of a table row about `metric`: `(target, "PASS"/"MISS")`,
    /// or `("-", untargeted)` for a row without a target.
    pub fn cells(&self, metric: &str, untargeted: &'static str) -> (String, &'static str) {
        match self.get(metric) {
            Some(c) => (c.target.to_string(), c.verdict()),
            None => ("-".to_string(), untargeted),
        }
    }

    /// How many targets were met and missed.
    pub fn verdicts(&self) -> Verdicts {
        let pass = self.0.iter().filter(|c| c.pass).count();
        Verdicts {
            pass,
            miss: self.0.len() - pass,
        }
    }

    /// Whether every target was met.
    pub fn all_pass(&self) -> bool {
        self.0.iter().all(|c| c.pass)
    }

    /// The closing line of a report: `overall: PASS (all targets met)` or the MISS one.
    pub fn overall(&self) -> &'static str {
        if self.all_pass() {
            "overall: PASS (all targets met)"
        } else {
            "overall: MISS (some targets not met; see above)"
        }
    }

    /// The target table: a header row (`first` names the first column), then one row per
    /// check, each ending in its verdict.
    pub fn table<'a>(&'a self, first: &'a str, style: TableStyle) -> Table<'a> {
        Table {
            checks: self,
            first,
            style,
        }
    }
}

impl Deref for Checks {
    type Target = [Check];
    fn deref(&self) -> &[Check] {
        &self.0
    }
}

/// [`Checks::table`], printable.
pub struct Table<'a> {
    checks: &'a Checks,
    first: &'a str,
    style: TableStyle,
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TableStyle {
            name,
            value,
            decimals,
            limit,
            verdict,
        } = self.style;
        writeln!(
            f,
            "{:<name$} {:>value$} {:>limit$} {:>8}",
            self.first, "value", "limit", "verdict"
        )?;
        for c in self.checks.iter() {
            writeln!(
                f,
                "{:<name$} {:>value$.decimals$} {:>limit$} {:>verdict$}",
                c.metric,
                c.value,
                c.target.to_string(),
                c.verdict()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Checks {
        let mut c = Checks::new();
        assert!(c.add("fast", 1.0, Limit::Below(2.0)));
        assert!(!c.add("big", 3.0, Limit::AtMost(2.0)));
        c
    }

    #[test]
    fn counts_and_finds_verdicts() {
        let c = two();
        assert_eq!(c.len(), 2);
        assert_eq!(c.verdicts(), Verdicts { pass: 1, miss: 1 });
        assert!(!c.all_pass());
        assert_eq!(c.cells("big", "info"), ("<= 2.00".to_string(), "MISS"));
        assert_eq!(c.cells("other", "info"), ("-".to_string(), "info"));
        assert!(c.overall().starts_with("overall: MISS"));
        assert!(Checks::new().overall().starts_with("overall: PASS"));
    }

    #[test]
    fn the_table_has_a_row_per_check_ending_in_its_verdict() {
        let style = TableStyle {
            name: 6,
            value: 6,
            decimals: 1,
            limit: 8,
            verdict: 5,
        };
        let text = two().table("target", style).to_string();
        assert_eq!(
            text,
            "target  value    limit  verdict\n\
             fast      1.0   < 2.00  PASS\n\
             big       3.0  <= 2.00  MISS\n"
        );
    }

    #[test]
    fn serialises_as_a_list() {
        let v = serde_json::to_value(two()).expect("serialises");
        assert_eq!(v[0]["metric"], "fast");
        assert_eq!(v[1]["pass"], false);
        assert!(v[1]["value"].is_number());
    }
}
