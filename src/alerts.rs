//! Alert rules and their pure evaluation.
//!
//! A rule says "fire when this run's metric goes strictly above this threshold". The store
//! evaluates every rule inside the write transaction that changed the run's rollup row (see
//! `store::write`), from that row alone, so evaluation costs the same at the first call and the
//! millionth, and two processes writing one run serialize on the write lock: neither both fire nor
//! both miss. This module only decides; the store persists and returns what fired.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The run's cumulative LLM cost in USD (exact: compared in pico-dollars).
    CostUsd,
    /// Failed tool calls / tool calls in the run.
    ErrorRate,
    /// Input + output tokens of the run.
    Tokens,
    /// LLM calls in the run (a runaway-loop guard).
    LlmCalls,
    /// The latency of one LLM call, in milliseconds.
    LlmLatencyMs,
}

impl Metric {
    /// Every metric, in the order they are listed to users.
    pub const ALL: [Metric; 5] = [
        Metric::CostUsd,
        Metric::ErrorRate,
        Metric::Tokens,
        Metric::LlmCalls,
        Metric::LlmLatencyMs,
    ];

    /// The metric's name in the database and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::CostUsd => "cost_usd",
            Metric::ErrorRate => "error_rate",
            Metric::Tokens => "tokens",
            Metric::LlmCalls => "llm_calls",
            Metric::LlmLatencyMs => "llm_latency_ms",
        }
    }

    /// Whether the metric is a rate, for which `min_calls` applies.
    pub fn is_rate(self) -> bool {
        matches!(self, Metric::ErrorRate)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::UnknownMetric {
                metric: s.to_string(),
                known: Metric::ALL.iter().map(|m| m.as_str()).collect(),
            })
    }
}

/// A persisted alert rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    /// What it watches.
    pub metric: Metric,
    /// Fires when the value is strictly greater than this.
    pub threshold: f64,
    /// For rates: wait until the run has this many tool calls (0: no wait).
    pub min_calls: i64,
}

impl AlertRule {
    /// A validated rule.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a NaN, infinite or negative threshold, a negative `min_calls`,
    /// or `min_calls` on a metric that is not a rate.
    pub fn new(metric: Metric, threshold: f64, min_calls: i64) -> Result<AlertRule> {
        if !threshold.is_finite() || threshold < 0.0 {
            return Err(Error::invalid(
                "threshold",
                threshold,
                "must be a finite, non-negative number",
            ));
        }
        if min_calls < 0 {
            return Err(Error::invalid("min_calls", min_calls, "cannot be negative"));
        }
        if min_calls > 0 && !metric.is_rate() {
            return Err(Error::invalid(
                "min_calls",
                min_calls,
                format!("only applies to rate metrics (error_rate), not {metric}"),
            ));
        }
        Ok(AlertRule {
            metric,
            threshold,
            min_calls,
        })
    }

    /// The threshold of a `cost_usd` rule in exact pico-dollars (its decimal text, scaled).
    fn threshold_picousd(&self) -> i128 {
        crate::pricing::usd_to_picousd(self.threshold).unwrap_or(i128::MAX)
    }
}

/// A run's rollup values after a write, as rules see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    /// LLM calls in the run.
    pub llm_calls: i64,
    /// Tool calls in the run.
    pub tool_calls: i64,
    /// Failed tool calls in the run.
    pub tool_errors: i64,
    /// Input tokens of the run.
    pub input_tokens: i64,
    /// Output tokens of the run.
    pub output_tokens: i64,
    /// Exact cost of the run's priced calls.
    pub cost_picousd: i64,
}

/// The value of `rule` if it is breached after a write, else `None`. `llm_latency_ms` is the
/// latency of the LLM call just written (`None` for a tool call).
pub fn breach(rule: &AlertRule, totals: &RunTotals, llm_latency_ms: Option<f64>) -> Option<f64> {
    match rule.metric {
        Metric::CostUsd => (totals.cost_picousd as i128 > rule.threshold_picousd())
            .then(|| crate::pricing::picousd_to_usd(totals.cost_picousd as i128)),
        Metric::ErrorRate => {
            if totals.tool_calls == 0 || totals.tool_calls < rule.min_calls {
                return None;
            }
            let rate = totals.tool_errors as f64 / totals.tool_calls as f64;
            (rate > rule.threshold).then_some(rate)
        }
        Metric::Tokens => {
            let tokens = totals.input_tokens as i128 + totals.output_tokens as i128;
            (tokens as f64 > rule.threshold).then_some(tokens as f64)
        }
        Metric::LlmCalls => {
            (totals.llm_calls as f64 > rule.threshold).then_some(totals.llm_calls as f64)
        }
        Metric::LlmLatencyMs => llm_latency_ms.filter(|l| *l > rule.threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(m: Metric, t: f64) -> AlertRule {
        AlertRule::new(m, t, 0).unwrap()
    }

    #[test]
    fn strictly_greater_at_below_above() {
        let mut t = RunTotals {
            cost_picousd: 500_000_000_000,
            ..Default::default()
        };
        let r = rule(Metric::CostUsd, 0.5);
        assert_eq!(breach(&r, &t, None), None, "at threshold");
        t.cost_picousd -= 1;
        assert_eq!(breach(&r, &t, None), None, "below");
        t.cost_picousd += 2;
        assert!(breach(&r, &t, None).is_some(), "one pico-dollar above");

        let r = rule(Metric::LlmCalls, 3.0);
        t.llm_calls = 3;
        assert_eq!(breach(&r, &t, None), None);
        t.llm_calls = 4;
        assert_eq!(breach(&r, &t, None), Some(4.0));

        let r = rule(Metric::LlmLatencyMs, 100.0);
        assert_eq!(breach(&r, &t, Some(100.0)), None);
        assert_eq!(breach(&r, &t, Some(100.5)), Some(100.5));
        assert_eq!(breach(&r, &t, None), None);
    }

    #[test]
    fn error_rate_waits_for_min_calls() {
        let r = AlertRule::new(Metric::ErrorRate, 0.25, 4).unwrap();
        let mut t = RunTotals {
            tool_calls: 3,
            tool_errors: 3,
            ..Default::default()
        };
        assert_eq!(breach(&r, &t, None), None);
        t.tool_calls = 4;
        assert_eq!(breach(&r, &t, None), Some(0.75));
        t.tool_errors = 1;
        assert_eq!(breach(&r, &t, None), None, "exactly at 0.25");
    }

    #[test]
    fn bad_rules_are_typed_errors() {
        assert!(matches!(
            "cost".parse::<Metric>(),
            Err(Error::UnknownMetric { .. })
        ));
        for t in [f64::NAN, f64::INFINITY, -1.0] {
            assert!(AlertRule::new(Metric::CostUsd, t, 0).is_err());
        }
        assert!(AlertRule::new(Metric::CostUsd, 1.0, 3).is_err());
    }
}
