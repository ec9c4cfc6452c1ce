//! Samples, medians and ratios, written as a Markdown table and a CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Where a sample belongs: a section (e.g. `endpoints bridge`), an operation, the scale it was
/// taken at (endpoints, networks or ports present) and the system measured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Section of the report.
    pub section: String,
    /// Operation, e.g. `connect + disconnect`.
    pub op: String,
    /// Scale.
    pub n: usize,
    /// System, e.g. `wharf API`, `docker`.
    pub system: String,
}

/// Every sample of a run, in the order systems were first seen per section.
#[derive(Debug, Default)]
pub struct Report {
    samples: BTreeMap<Key, Vec<f64>>,
    order: Vec<(String, String)>,
    notes: Vec<String>,
    /// Values that are not latencies (memory, throughput): section, label, value, unit.
    pub values: Vec<(String, String, f64, String)>,
}

/// The median of `v` (which must not be empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

impl Report {
    /// Record one latency sample.
    pub fn add(&mut self, section: &str, op: &str, n: usize, system: &str, d: Duration) {
        if !self.order.iter().any(|(s, y)| s == section && y == system) {
            self.order.push((section.into(), system.into()));
        }
        let key = Key { section: section.into(), op: op.into(), n, system: system.into() };
        self.samples.entry(key).or_default().push(d.as_secs_f64() * 1e6);
    }

    /// Record a value that is not a latency.
    pub fn value(&mut self, section: &str, label: &str, value: f64, unit: &str) {
        self.values.push((section.into(), label.into(), value, unit.into()));
    }

    /// A line printed under the tables: a system that could not be measured, and why.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("harness: {note}");
        self.notes.push(note);
    }

    /// Systems of `section`, in the order they were first measured.
    pub fn systems(&self, section: &str) -> Vec<String> {
        self.order.iter().filter(|(s, _)| s == section).map(|(_, y)| y.clone()).collect()
    }

    /// Median (µs) of one cell.
    pub fn median(&self, section: &str, op: &str, n: usize, system: &str) -> Option<f64> {
        let key = Key { section: section.into(), op: op.into(), n, system: system.into() };
        self.samples.get(&key).filter(|v| !v.is_empty()).map(|v| median(v))
    }

    /// The scales measured for `section` and `op`, ascending.
    pub fn scales(&self, section: &str, op: &str) -> Vec<usize> {
        let mut n: Vec<usize> =
            self.samples.keys().filter(|k| k.section == section && k.op == op).map(|k| k.n).collect();
        n.dedup();
        n
    }

    /// Sections in the order they were measured.
    pub fn sections(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (s, _) in &self.order {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    fn ops(&self, section: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in self.samples.keys().filter(|k| k.section == section) {
            if !out.contains(&k.op) {
                out.push(k.op.clone());
            }
        }
        out
    }

    /// The report as Markdown: per section one table, medians in µs, and each system's time
    /// divided by wharf's (the first system of the section) — above 1 means wharf is faster.
    pub fn markdown(&self, title: &str, preamble: &str) -> String {
        let mut md = format!("# {title}\n\n{preamble}\n");
        for section in self.sections() {
            let systems = self.systems(&section);
            let base = &systems[0];
            let _ = write!(md, "\n## {section}\n\nMedian µs; in brackets: that system's median ÷ {base}'s.\n\n");
            let _ = writeln!(md, "| operation | n | {} |", systems.join(" | "));
            let _ = writeln!(md, "|---|---|{}", "---|".repeat(systems.len()));
            for op in self.ops(&section) {
                for n in self.scales(&section, &op) {
                    let b = self.median(&section, &op, n, base);
                    let cells: Vec<String> = systems
                        .iter()
                        .map(|s| match (self.median(&section, &op, n, s), b) {
                            (Some(v), Some(b)) if s != base => format!("{v:.0} ({:.1}×)", v / b),
                            (Some(v), _) => format!("{v:.0}"),
                            (None, _) => "—".into(),
                        })
                        .collect();
                    let _ = writeln!(md, "| {op} | {n} | {} |", cells.join(" | "));
                }
            }
        }
        if !self.values.is_empty() {
            md.push_str("\n## Other measurements\n\n| section | what | value |\n|---|---|---|\n");
            for (section, label, v, unit) in &self.values {
                let _ = writeln!(md, "| {section} | {label} | {v:.1} {unit} |");
            }
        }
        if !self.notes.is_empty() {
            md.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }

    /// Every cell as CSV: section, operation, n, system, samples, median, p10 and p90 (µs);
    /// then the other values with their unit in the operation column.
    pub fn csv(&self) -> String {
        let mut csv = String::from("section,operation,n,system,samples,median_us,p10_us,p90_us\n");
        for (k, v) in &self.samples {
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{:.1},{:.1},{:.1}",
                k.section,
                k.op,
                k.n,
                k.system,
                s.len(),
                median(&s),
                at(0.1),
                at(0.9)
            );
        }
        for (section, label, v, unit) in &self.values {
            let _ = writeln!(csv, "{section},{label} ({unit}),,,1,{v:.1},,");
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios_against_the_first_system() {
        let mut r = Report::default();
        for us in [100, 300, 200] {
            r.add("endpoints", "connect", 1, "wharf API", Duration::from_micros(us));
        }
        for us in [1000, 3000] {
            r.add("endpoints", "connect", 1, "docker", Duration::from_micros(us));
        }
        r.add("endpoints", "connect", 10, "wharf API", Duration::from_micros(250));
        assert_eq!(r.median("endpoints", "connect", 1, "wharf API"), Some(200.0));
        assert_eq!(r.median("endpoints", "connect", 1, "docker"), Some(2000.0));
        assert_eq!(r.scales("endpoints", "connect"), [1, 10]);
        let md = r.markdown("t", "p");
        assert!(md.contains("| connect | 1 | 200 | 2000 (10.0×) |"), "{md}");
        assert!(md.contains("| connect | 10 | 250 | — |"), "{md}");
        let csv = r.csv();
        assert!(csv.contains("endpoints,connect,1,docker,2,2000.0,1000.0,3000.0"), "{csv}");
    }
}
