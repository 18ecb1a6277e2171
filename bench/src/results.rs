//! The benchmark's figures and how they are shown: the table printed at the end of a run and
//! the JSON document written to `--out`.
//!
//! The JSON's keys are stable: a figure keeps its key, and every figure has the same fields
//! (null when a field does not apply), so scripts and the README can rely on them. This module
//! only formats what it is given; it must never measure anything or change a value.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeMap as _;

/// The version of the results document; it changes only when a key changes meaning.
pub const FORMAT: u32 = 1;

/// One figure of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    #[serde(skip)]
    pub key: &'static str,
    /// What it measures, in words.
    pub label: String,
    /// The median of `runs`, or the single value.
    pub value: f64,
    pub unit: Unit,
    /// Every run's value, in order.
    pub runs: Vec<f64>,
    /// The target, in words, when the issue sets one.
    pub target: Option<String>,
    /// Whether `value` meets the target.
    pub met: Option<bool>,
    /// The same figure for the baseline, when it has one.
    pub baseline: Option<f64>,
    /// How many times better tally is than the baseline (baseline ÷ tally), or for figures
    /// given as ratios of another figure, that ratio.
    pub vs_baseline: Option<f64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Seconds,
    Milliseconds,
    Microseconds,
    Requests,
    Megabytes,
    Ratio,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds => format!("{value:.2} s"),
            Unit::Milliseconds => format!("{value:.0} ms"),
            Unit::Microseconds => format!("{value:.2} µs"),
            Unit::Requests => format!("{} req", thousands(value.round() as u64)),
            Unit::Megabytes => format!("{value:.1} MB"),
            Unit::Ratio => format!("{value:.3}×"),
        }
    }
}

impl Figure {
    pub fn new(key: &'static str, label: impl Into<String>, unit: Unit, runs: Vec<f64>) -> Figure {
        Figure {
            key,
            label: label.into(),
            value: median(&runs),
            unit,
            runs,
            target: None,
            met: None,
            baseline: None,
            vs_baseline: None,
            note: None,
        }
    }

    /// Sets the target and whether the value meets it.
    pub fn target(mut self, text: impl Into<String>, met: bool) -> Figure {
        self.target = Some(text.into());
        self.met = Some(met);
        self
    }

    /// Sets the baseline's value and the ratio baseline ÷ tally.
    pub fn baseline(mut self, baseline: f64) -> Figure {
        self.baseline = Some(baseline);
        self.vs_baseline = (self.value > 0.0).then(|| baseline / self.value);
        self
    }

    /// Sets a ratio to another figure (shown in the ratio column).
    pub fn ratio(mut self, ratio: f64) -> Figure {
        self.vs_baseline = Some(ratio);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }
}

/// Figures in the order they were measured, serialized as an object keyed by figure key.
#[derive(Debug, Clone, Default)]
pub struct Figures(pub Vec<Figure>);

impl Figures {
    pub fn push(&mut self, figure: Figure) {
        self.0.push(figure);
    }

    pub fn missed(&self) -> Vec<&Figure> {
        self.0.iter().filter(|f| f.met == Some(false)).collect()
    }
}

impl Serialize for Figures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for figure in &self.0 {
            map.serialize_entry(figure.key, figure)?;
        }
        map.end()
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The figures as a table: figure, tally's value, target and whether it is met, the baseline's
/// value and the ratio.
pub fn table(figures: &Figures) -> String {
    let rows: Vec<[String; 5]> = figures
        .0
        .iter()
        .map(|f| {
            let target = match (&f.target, f.met) {
                (Some(t), Some(true)) => format!("{t}  ok"),
                (Some(t), Some(false)) => format!("{t}  MISSED"),
                (Some(t), None) => t.clone(),
                (None, _) => String::new(),
            };
            let baseline = f.baseline.map(|b| f.unit.show(b)).unwrap_or_default();
            let ratio = f.vs_baseline.map(|r| format!("{r:.2}×")).unwrap_or_default();
            [f.label.clone(), f.unit.show(f.value), target, baseline, ratio]
        })
        .collect();
    let header = ["figure", "tally", "target", "baseline", "ratio"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5]| {
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width - cell.chars().count();
            if i == 1 || i == 3 || i == 4 {
                let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, [&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]);
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    for figure in &figures.0 {
        if let Some(note) = &figure.note {
            let _ = writeln!(out, "  {}: {note}", figure.label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn figures_serialize_as_an_object_in_order_with_every_field() {
        let mut figures = Figures::default();
        figures.push(
            Figure::new("b_wall_s", "wall", Unit::Seconds, vec![2.0, 4.0, 3.0])
                .target("≤ 5 s", true)
                .baseline(30.0),
        );
        figures.push(Figure::new("a_requests", "requests", Unit::Requests, vec![7.0]));
        let json = serde_json::to_string(&figures).unwrap();
        assert!(json.find("b_wall_s").unwrap() < json.find("a_requests").unwrap(), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["b_wall_s"]["value"], 3.0);
        assert_eq!(value["b_wall_s"]["vs_baseline"], 10.0);
        assert_eq!(value["b_wall_s"]["unit"], "seconds");
        assert!(value["a_requests"]["target"].is_null());
        assert!(value["a_requests"].as_object().unwrap().contains_key("note"));
    }

    #[test]
    fn the_table_marks_missed_targets() {
        let mut figures = Figures::default();
        let cpu = Figure::new("x", "cpu", Unit::Microseconds, vec![12.0]);
        figures.push(cpu.target("< 10 µs", false));
        let text = table(&figures);
        assert!(text.contains("MISSED"), "{text}");
        assert!(text.contains("12.00 µs"), "{text}");
        assert_eq!(thousands(7516), "7,516");
    }
}
