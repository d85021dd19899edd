//! The figures issue 12 aims at, against what this run measured: met, missed or not measured.

use std::fmt::Write as _;

use super::{Cell, Condition, report};

/// What the run measured beyond the table.
#[derive(Debug, Default)]
pub struct Figures {
    pub hold_p99_us: Option<f64>,
    pub engine_events_per_s: Option<f64>,
    pub end_to_end_events_per_s: Option<f64>,
    pub rss_mib_after_1m: Option<f64>,
    pub start_to_enforcing_s: Option<f64>,
}

struct Goal {
    what: String,
    /// `<=` or `>=` the limit.
    at_most: bool,
    limit: f64,
    unit: &'static str,
    measured: Option<f64>,
}

fn ratio(cells: &[Cell], workload: &str, condition: Condition) -> Option<f64> {
    let cell =
        cells.iter().find(|c| c.workload.key == workload && c.condition == condition && !c.samples.is_empty())?;
    let base = report::baseline(cells, cell)?;
    Some(cell.median() / base)
}

pub fn markdown(cells: &[Cell], figures: &Figures) -> String {
    let ratio_goal = |what: &str, workload: &str, condition: Condition, limit: f64| Goal {
        what: what.to_string(),
        at_most: true,
        limit,
        unit: "×",
        measured: ratio(cells, workload, condition),
    };
    let goals = [
        ratio_goal("getppid, outside sessions", "getppid", Condition::Outside, 1.05),
        ratio_goal("openat + close, outside sessions", "open", Condition::Outside, 1.10),
        ratio_goal("fork + exec, outside sessions", "exec", Condition::Outside, 1.05),
        ratio_goal("TCP connect, outside sessions", "connect", Condition::Outside, 1.05),
        ratio_goal("openat + close, inside at `decisions`", "open", Condition::Inside, 1.3),
        ratio_goal("unwatched exec, inside at `decisions`", "exec", Condition::Inside, 1.15),
        ratio_goal("TCP connect, inside at `decisions`", "connect", Condition::Inside, 1.15),
        Goal {
            what: "hold round trip p99".into(),
            at_most: true,
            limit: 300.0,
            unit: " µs",
            measured: figures.hold_p99_us,
        },
        Goal {
            what: "engine, one core".into(),
            at_most: false,
            limit: 1e6,
            unit: " events/s",
            measured: figures.engine_events_per_s,
        },
        Goal {
            what: "end to end with no loss".into(),
            at_most: false,
            limit: 3e5,
            unit: " events/s",
            measured: figures.end_to_end_events_per_s,
        },
        Goal {
            what: "daemon RSS after 1M events".into(),
            at_most: true,
            limit: 30.0,
            unit: " MiB",
            measured: figures.rss_mib_after_1m,
        },
        Goal {
            what: "start to enforcing".into(),
            at_most: true,
            limit: 1.0,
            unit: " s",
            measured: figures.start_to_enforcing_s,
        },
    ];
    let mut out = String::from("| Goal | limit | measured | met |\n|---|---:|---:|---|\n");
    for goal in &goals {
        let shown = |v: f64| {
            if v >= 1000.0 { format!("{:.0}{}", v, goal.unit) } else { format!("{:.2}{}", v, goal.unit) }
        };
        let (measured, met) = match goal.measured {
            Some(v) => {
                let met = if goal.at_most { v <= goal.limit } else { v >= goal.limit };
                (shown(v), if met { "yes" } else { "**no**" })
            }
            None => ("not measured".to_string(), "-"),
        };
        let _ = writeln!(
            out,
            "| {} | {} {} | {measured} | {met} |",
            goal.what,
            if goal.at_most { "≤" } else { "≥" },
            shown(goal.limit)
        );
    }
    out
}
