//! The final figures: a table for people (stdout), or one JSON object for scripts, whose keys
//! (`figures.<key>`) stay stable for `bench/compare.sh`.

use serde_json::{Map, Value, json};

/// A number as shown: whole counts with thousands separators, measures with decimals.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    Int(u64),
    Real(f64),
}

/// One line of the table, one key of the JSON.
#[derive(Debug, Clone)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub value: Num,
    pub unit: &'static str,
}

/// Everything a run reports.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: &'static str,
    /// The run's settings, as given: (name, value).
    pub params: Vec<(&'static str, String)>,
    pub figures: Vec<Figure>,
    /// Per-client series, e.g. each consumer's count: (name, values).
    pub lists: Vec<(&'static str, Vec<u64>)>,
    /// Things the reader should know (a refused publish, a short drain...).
    pub notes: Vec<String>,
}

impl Report {
    pub fn int(&mut self, key: &'static str, label: &'static str, v: u64, unit: &'static str) {
        self.figures.push(Figure {
            key,
            label,
            value: Num::Int(v),
            unit,
        });
    }

    pub fn real(&mut self, key: &'static str, label: &'static str, v: f64, unit: &'static str) {
        self.figures.push(Figure {
            key,
            label,
            value: Num::Real(v),
            unit,
        });
    }

    pub fn to_json(&self) -> Value {
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(v.clone())))
            .collect();
        let figures: Map<String, Value> = self
            .figures
            .iter()
            .map(|f| {
                let v = match f.value {
                    Num::Int(n) => json!(n),
                    // Three decimals are plenty and keep the output free of float noise.
                    Num::Real(x) => json!((x * 1000.0).round() / 1000.0),
                };
                (f.key.to_string(), v)
            })
            .collect();
        let lists: Map<String, Value> = self
            .lists
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        json!({
            "scenario": self.scenario,
            "params": params,
            "figures": figures,
            "lists": lists,
            "notes": self.notes,
        })
    }

    pub fn to_table(&self) -> String {
        let mut s = format!("roost-bench {}:", self.scenario);
        for (k, v) in &self.params {
            s.push_str(&format!(" {k}={v}"));
        }
        s.push('\n');
        let width = self
            .figures
            .iter()
            .map(|f| f.label.len())
            .max()
            .unwrap_or(0);
        for f in &self.figures {
            let v = match f.value {
                Num::Int(n) => count(n),
                Num::Real(x) => real(x),
            };
            s.push_str(&format!("  {:<width$}  {v:>14} {}\n", f.label, f.unit));
        }
        for (name, values) in &self.lists {
            let shown: Vec<String> = values.iter().map(|&n| count(n)).collect();
            s.push_str(&format!("  {name}: {}\n", shown.join(", ")));
        }
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }
}

/// 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to a whole number.
pub fn rate(x: f64) -> String {
    count(x.max(0.0).round() as u64)
}

/// A measure: one decimal from 10 up, three significant digits below.
fn real(x: f64) -> String {
    if x.abs() >= 10.0 {
        let fixed = format!("{:.1}", x.abs());
        let (whole, tenths) = fixed.split_once('.').unwrap_or((&fixed, "0"));
        let sign = if x < 0.0 { "-" } else { "" };
        format!("{sign}{}.{tenths}", count(whole.parse().unwrap_or(0)))
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(real(1234.56), "1,234.6");
        assert_eq!(real(0.7234), "0.723");
        assert_eq!(real(1234.96), "1,235.0");
    }

    #[test]
    fn json_has_flat_figures() {
        let mut r = Report {
            scenario: "fanin",
            ..Report::default()
        };
        r.int("delivered_per_sec", "delivered", 5, "msg/s");
        r.real("bench_cpu_pct", "bench CPU", 12.3456, "%");
        let j = r.to_json();
        assert_eq!(j["figures"]["delivered_per_sec"], 5);
        assert_eq!(j["figures"]["bench_cpu_pct"], 12.346);
    }
}
