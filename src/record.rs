//! The records a user writes and reads: [`LlmCall`], [`ToolCall`], [`Alert`], [`RunSummary`].
//!
//! Field names are the contract of `../shared/SPEC.md` section 2: they are the column names of the
//! database and the keys of the JSONL lines, so a field renamed here is a breaking change for
//! analysts and scripts. Validation lives here too, as pure functions, so that every entry point
//! (the API, the batch writer, the JSONL importer) rejects the same values with the same error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pricing::Usage;

/// Deepest JSON nesting accepted in metadata (serde_json's own parse limit is 128).
pub const MAX_METADATA_DEPTH: usize = 128;

/// One LLM call inside a run.
///
/// Build one with struct update syntax over [`Default`]; the ids, model and token counts are
/// what a real call needs:
/// ```
/// let call = agentobs::LlmCall {
///     call_id: "c1".into(),
///     run_id: "run-1".into(),
///     model: "gpt-4o".into(),
///     input_tokens: 1200,
///     output_tokens: 300,
///     latency_ms: 850.0,
///     ..Default::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmCall {
    /// Unique id of the call; recording the same id again with the same content is a no-op.
    pub call_id: String,
    /// The run the call belongs to (started implicitly if unknown).
    pub run_id: String,
    /// Position of the call in the run (export order).
    #[serde(default)]
    pub step: i64,
    /// Model name as sent to the provider; looked up in the pricing table.
    pub model: String,
    /// All input tokens, including cached and cache-write tokens.
    pub input_tokens: i64,
    /// All output tokens, including reasoning tokens.
    pub output_tokens: i64,
    /// Wall-clock latency of the call in milliseconds.
    pub latency_ms: f64,
    /// Cost in USD. `None`: computed from the pricing table; a given cost is kept as given.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Unix epoch seconds; `None`: now.
    #[serde(default)]
    pub timestamp: Option<f64>,
    /// The response came from a response cache without a provider call (cost 0).
    #[serde(default)]
    pub cached: bool,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<i64>,
    /// Input tokens written to the provider's prompt cache (part of `input_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<i64>,
    /// Output tokens spent on reasoning (part of `output_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<i64>,
    /// Error message when the call failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Free-form JSON object.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// One tool call inside a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Unique id of the call; recording the same id again with the same content is a no-op.
    pub call_id: String,
    /// The run the call belongs to (started implicitly if unknown).
    pub run_id: String,
    /// Position of the call in the run (export order).
    #[serde(default)]
    pub step: i64,
    /// The tool's name.
    pub tool_name: String,
    /// Wall-clock latency in milliseconds.
    pub latency_ms: f64,
    /// Whether the tool call succeeded (failed calls count in the error rate).
    pub success: bool,
    /// Error message when it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Unix epoch seconds; `None`: now.
    #[serde(default)]
    pub timestamp: Option<f64>,
    /// Free-form JSON object.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// One item of a [`crate::Pipeline::record_batch`]: a call, or a run starting or ending, so a
/// whole run (or many) can be written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An LLM call.
    Llm(LlmCall),
    /// A tool call.
    Tool(ToolCall),
    /// Start a run (as [`crate::Pipeline::start_run_at`]).
    StartRun {
        /// The run id.
        run_id: String,
        /// A JSON object.
        metadata: Value,
        /// Epoch seconds; `None`: now.
        started_at: Option<f64>,
    },
    /// End a run (as [`crate::Pipeline::end_run_at`]).
    EndRun {
        /// The run id.
        run_id: String,
        /// The final status (not empty, not `running`).
        status: String,
        /// Epoch seconds; `None`: now.
        ended_at: Option<f64>,
    },
}

impl From<LlmCall> for Record {
    fn from(c: LlmCall) -> Self {
        Record::Llm(c)
    }
}

impl From<ToolCall> for Record {
    fn from(c: ToolCall) -> Self {
        Record::Tool(c)
    }
}

/// An alert that fired: a run's metric went strictly above a rule's threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// The run whose value crossed the threshold.
    pub run_id: String,
    /// The metric (`cost_usd`, `error_rate`, `tokens`, `llm_calls`, `llm_latency_ms`).
    pub metric: String,
    /// The value that crossed the threshold.
    pub value: f64,
    /// The rule's threshold at the time.
    pub threshold: f64,
    /// The call whose write made the value cross.
    pub call_id: String,
    /// When it fired, epoch seconds.
    pub fired_at: f64,
}

/// A run's totals, as returned by [`crate::Pipeline::end_run`] and [`crate::Pipeline::run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// `running`, or the status the run ended with.
    pub status: String,
    /// The run's metadata object.
    pub metadata: Value,
    /// Start, epoch seconds.
    pub started_at: f64,
    /// End, epoch seconds (`None` while running).
    pub ended_at: Option<f64>,
    /// `(ended_at - started_at)` in milliseconds (`None` while running).
    pub duration_ms: Option<f64>,
    /// LLM calls recorded.
    pub llm_calls: i64,
    /// Tool calls recorded.
    pub tool_calls: i64,
    /// Tool calls that failed.
    pub tool_errors: i64,
    /// `tool_errors / tool_calls` (`None` without tool calls).
    pub error_rate: Option<f64>,
    /// Input tokens over all LLM calls.
    pub input_tokens: i64,
    /// Output tokens over all LLM calls.
    pub output_tokens: i64,
    /// LLM calls served from a response cache.
    pub cached_calls: i64,
    /// LLM calls with no known price (not included in `cost_usd`).
    pub unpriced_calls: i64,
    /// Input + output tokens of the unpriced calls.
    pub unpriced_tokens: i64,
    /// Exact total cost of the priced calls, pico-dollars.
    pub cost_picousd: i64,
    /// The same in USD.
    pub cost_usd: f64,
    /// Alerts fired in the run, oldest first.
    pub alerts: Vec<Alert>,
}

/// Epoch seconds now.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Parses a time given as an RFC 3339 date (`2024-05-13`, midnight UTC), an RFC 3339 date-time,
/// or epoch seconds in text, to epoch seconds.
///
/// # Errors
/// A message saying which forms are accepted.
pub fn parse_time(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() {
            return Ok(secs);
        }
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp() as f64 + dt.timestamp_subsec_nanos() as f64 / 1e9);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = d.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc().timestamp() as f64);
        }
    }
    Err(format!(
        "{text:?} is not an RFC 3339 date (2024-05-13), date-time (2024-05-13T12:00:00Z) or epoch seconds"
    ))
}

pub(crate) fn check_id(field: &'static str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "\"\"", "cannot be empty"));
    }
    Ok(())
}

pub(crate) fn check_finite(field: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::invalid(field, v, "must be a finite number"));
    }
    Ok(())
}

/// An ended run's status: any non-empty text but `running`.
pub(crate) fn check_final_status(status: &str) -> Result<()> {
    if status.is_empty() || status == "running" {
        return Err(Error::invalid(
            "status",
            format!("{status:?}"),
            "an ended run needs a final status such as \"success\" or \"failed\"",
        ));
    }
    Ok(())
}

pub(crate) fn check_latency(v: f64) -> Result<()> {
    check_finite("latency_ms", v)?;
    if v < 0.0 {
        return Err(Error::invalid("latency_ms", v, "cannot be negative"));
    }
    Ok(())
}

/// Metadata must be a JSON object, no deeper than [`MAX_METADATA_DEPTH`].
pub(crate) fn check_metadata(field: &'static str, v: &Value) -> Result<()> {
    if !v.is_object() {
        return Err(Error::invalid(field, v, "must be a JSON object"));
    }
    fn depth_ok(v: &Value, left: usize) -> bool {
        match v {
            Value::Array(a) => left > 0 && a.iter().all(|x| depth_ok(x, left - 1)),
            Value::Object(o) => left > 0 && o.values().all(|x| depth_ok(x, left - 1)),
            _ => true,
        }
    }
    if !depth_ok(v, MAX_METADATA_DEPTH) {
        return Err(Error::invalid(
            field,
            "(deeply nested object)",
            format!("nested deeper than {MAX_METADATA_DEPTH} levels"),
        ));
    }
    Ok(())
}

impl LlmCall {
    /// The token usage the pricing rules see.
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens.unwrap_or(0),
            cache_write_tokens: self.cache_write_tokens.unwrap_or(0),
            reasoning_tokens: self.reasoning_tokens.unwrap_or(0),
        }
    }

    /// Checks every field (see `../shared/SPEC.md` section 2).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the first invalid field and its value.
    pub fn validate(&self) -> Result<()> {
        check_id("call_id", &self.call_id)?;
        check_id("run_id", &self.run_id)?;
        check_id("model", &self.model)?;
        check_latency(self.latency_ms)?;
        if let Some(c) = self.cost_usd {
            check_finite("cost_usd", c)?;
            if c < 0.0 {
                return Err(Error::invalid("cost_usd", c, "cannot be negative"));
            }
        }
        if let Some(t) = self.timestamp {
            check_finite("timestamp", t)?;
        }
        self.usage().validate()?;
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }
}

impl ToolCall {
    /// Checks every field (see `../shared/SPEC.md` section 2).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the first invalid field and its value.
    pub fn validate(&self) -> Result<()> {
        check_id("call_id", &self.call_id)?;
        check_id("run_id", &self.run_id)?;
        check_id("tool_name", &self.tool_name)?;
        check_latency(self.latency_ms)?;
        if let Some(t) = self.timestamp {
            check_finite("timestamp", t)?;
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("2024-05-13").unwrap(), 1_715_558_400.0);
        assert_eq!(parse_time("2024-05-13T00:00:01Z").unwrap(), 1_715_558_401.0);
        assert_eq!(
            parse_time("2024-05-13T02:00:01+02:00").unwrap(),
            1_715_558_401.0
        );
        assert_eq!(parse_time("1715558400.5").unwrap(), 1_715_558_400.5);
        assert!(parse_time("nope").is_err());
        assert!(parse_time("inf").is_err());
    }
}
