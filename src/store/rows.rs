//! Row mapping: one function per record type, reading columns by name, so a query's column
//! order can change without silently shifting fields.

use rusqlite::Row;
use serde_json::Value;

use crate::record::{Alert, LlmCall, RunSummary, ToolCall};

/// Columns of `llm_calls` that make up a [`StoredLlm`].
pub(crate) const LLM_COLUMNS: &str = "call_id, run_id, step, model, input_tokens, output_tokens, \
     cached_input_tokens, cache_write_tokens, reasoning_tokens, latency_ms, cost_usd, \
     cost_picousd, cost_source, timestamp, cached, error, metadata";

/// A stored LLM call: the record, and where its cost came from.
#[derive(Debug, Clone)]
pub(crate) struct StoredLlm {
    pub call: LlmCall,
    pub cost_picousd: Option<i64>,
    pub cost_source: String,
}

/// Columns of `tool_calls` that make up a [`ToolCall`].
pub(crate) const TOOL_COLUMNS: &str =
    "call_id, run_id, step, tool_name, latency_ms, success, error, timestamp, metadata";

/// Columns of `alerts` that make up an [`Alert`].
pub(crate) const ALERT_COLUMNS: &str = "run_id, metric, value, threshold, call_id, fired_at";

/// Columns of `runs` that make up a [`RunSummary`] (without its alerts).
pub(crate) const RUN_COLUMNS: &str = "run_id, status, metadata, started_at, ended_at, duration_ms, \
     llm_calls, tool_calls, tool_errors, input_tokens, output_tokens, cached_calls, unpriced_calls, \
     unpriced_tokens, cost_picousd, cost_usd";

/// Parses stored metadata text. The column is CHECKed to hold a JSON object, so a parse failure
/// means the file was edited by hand; the text is then kept as a JSON string rather than lost.
pub(crate) fn metadata_from_text(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

pub(crate) fn llm_call(row: &Row) -> rusqlite::Result<StoredLlm> {
    let call = LlmCall {
        call_id: row.get("call_id")?,
        run_id: row.get("run_id")?,
        step: row.get("step")?,
        model: row.get("model")?,
        input_tokens: row.get("input_tokens")?,
        output_tokens: row.get("output_tokens")?,
        cached_input_tokens: row.get("cached_input_tokens")?,
        cache_write_tokens: row.get("cache_write_tokens")?,
        reasoning_tokens: row.get("reasoning_tokens")?,
        latency_ms: row.get("latency_ms")?,
        cost_usd: row.get("cost_usd")?,
        timestamp: Some(row.get("timestamp")?),
        cached: row.get("cached")?,
        error: row.get("error")?,
        metadata: metadata_from_text(row.get("metadata")?),
    };
    Ok(StoredLlm {
        call,
        cost_picousd: row.get("cost_picousd")?,
        cost_source: row.get("cost_source")?,
    })
}

pub(crate) fn tool_call(row: &Row) -> rusqlite::Result<ToolCall> {
    Ok(ToolCall {
        call_id: row.get("call_id")?,
        run_id: row.get("run_id")?,
        step: row.get("step")?,
        tool_name: row.get("tool_name")?,
        latency_ms: row.get("latency_ms")?,
        success: row.get("success")?,
        error: row.get("error")?,
        timestamp: Some(row.get("timestamp")?),
        metadata: metadata_from_text(row.get("metadata")?),
    })
}

pub(crate) fn alert(row: &Row) -> rusqlite::Result<Alert> {
    Ok(Alert {
        run_id: row.get("run_id")?,
        metric: row.get("metric")?,
        value: row.get("value")?,
        threshold: row.get("threshold")?,
        call_id: row.get("call_id")?,
        fired_at: row.get("fired_at")?,
    })
}

/// A [`RunSummary`] with an empty alert list (the caller fills it).
pub(crate) fn run_summary(row: &Row) -> rusqlite::Result<RunSummary> {
    let tool_calls: i64 = row.get("tool_calls")?;
    let tool_errors: i64 = row.get("tool_errors")?;
    Ok(RunSummary {
        run_id: row.get("run_id")?,
        status: row.get("status")?,
        metadata: metadata_from_text(row.get("metadata")?).unwrap_or(Value::Null),
        started_at: row.get("started_at")?,
        ended_at: row.get("ended_at")?,
        duration_ms: row.get("duration_ms")?,
        llm_calls: row.get("llm_calls")?,
        tool_calls,
        tool_errors,
        error_rate: (tool_calls > 0).then(|| tool_errors as f64 / tool_calls as f64),
        input_tokens: row.get("input_tokens")?,
        output_tokens: row.get("output_tokens")?,
        cached_calls: row.get("cached_calls")?,
        unpriced_calls: row.get("unpriced_calls")?,
        unpriced_tokens: row.get("unpriced_tokens")?,
        cost_picousd: row.get("cost_picousd")?,
        cost_usd: row.get("cost_usd")?,
        alerts: Vec::new(),
    })
}
