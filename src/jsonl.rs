//! JSONL export and import: one JSON object per record per line, streaming both ways.
//!
//! Export writes, per run, the `run` line, its LLM and tool calls ordered by `step` then
//! `timestamp`, then its `alert` lines; every line carries `"type"` and the record field names of
//! `../shared/SPEC.md`. LLM call lines add `cost_picousd` and `cost_source`, so a cost computed
//! from a table (or a call left unpriced) comes back exactly as it left, not as a float "given"
//! by the user. serde_json escapes every control character, so any string stays on its line, and
//! floats are written in their shortest round-trip form: export → import → export is
//! byte-identical.
//!
//! Import reads the same lines in any order, from any number of runs, and commits in batches.
//! It restores history rather than recording it live: calls may arrive for runs already ended
//! (their run line came first), a run line completes a run that an earlier call started
//! implicitly, alerts are restored as they were and no rule is evaluated. A bad line is rejected
//! alone and leaves nothing behind (or, with `strict`, the whole file is one transaction and any
//! bad line rolls everything back). Lines are read in chunks on the caller's thread, parsed and
//! priced on a helper thread, and written on the caller's thread, in order.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::{Alert, LlmCall, ToolCall};
use crate::store::rows;
use crate::store::write::{self, CallCost, Prepared, Writer, Written};
use crate::{Pipeline, Pricing};

/// The `run` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunLine {
    run_id: String,
    #[serde(default = "empty_object")]
    metadata: Value,
    #[serde(default = "running")]
    status: String,
    #[serde(deserialize_with = "de_time")]
    started_at: f64,
    #[serde(default, deserialize_with = "de_opt_time")]
    ended_at: Option<f64>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn running() -> String {
    "running".into()
}

/// An `llm_call` line: the [`LlmCall`] fields plus the exact cost and its origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmLine {
    call_id: String,
    run_id: String,
    #[serde(default)]
    step: i64,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<i64>,
    latency_ms: f64,
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost_picousd: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost_source: Option<String>,
    #[serde(deserialize_with = "de_time")]
    timestamp: f64,
    #[serde(default)]
    cached: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// A `tool_call` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolLine {
    call_id: String,
    run_id: String,
    #[serde(default)]
    step: i64,
    tool_name: String,
    latency_ms: f64,
    success: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(deserialize_with = "de_time")]
    timestamp: f64,
    #[serde(default)]
    metadata: Option<Value>,
}

/// An `alert` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertLine {
    run_id: String,
    metric: String,
    value: f64,
    threshold: f64,
    call_id: String,
    #[serde(deserialize_with = "de_time")]
    fired_at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Run(RunLine),
    LlmCall(LlmLine),
    ToolCall(ToolLine),
    Alert(AlertLine),
}

/// Epoch seconds as a number, or an RFC 3339 date or date-time string.
fn de_time<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum T {
        N(f64),
        S(String),
    }
    match T::deserialize(d)? {
        T::N(n) => Ok(n),
        T::S(s) => crate::record::parse_time(&s).map_err(serde::de::Error::custom),
    }
}

fn de_opt_time<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "de_time")] f64);
    Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
}

const SELECT_RUN: &str = "SELECT run_id, metadata, status, started_at, ended_at FROM runs
    WHERE run_id = ?1";

/// A run's calls in export order: by step, then timestamp (LLM before tool on a tie, then id).
const SELECT_CALLS: &str =
    "SELECT 0 AS kind, call_id, step, timestamp FROM llm_calls WHERE run_id = ?1
    UNION ALL
    SELECT 1 AS kind, call_id, step, timestamp FROM tool_calls WHERE run_id = ?1
    ORDER BY step, timestamp, kind, call_id";

const SELECT_ALERTS: &str = "SELECT run_id, metric, value, threshold, call_id, fired_at
    FROM alerts WHERE run_id = ?1 ORDER BY fired_at, alert_id";

const SELECT_RUN_IDS: &str = "SELECT run_id FROM runs
    WHERE started_at >= ?1 AND started_at < ?2 ORDER BY started_at, run_id";

fn write_line(out: &mut dyn Write, line: &Line) -> Result<()> {
    serde_json::to_writer(&mut *out, line).map_err(|e| Error::Io(e.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}

fn llm_line(stored: rows::StoredLlm) -> LlmLine {
    let c = stored.call;
    LlmLine {
        call_id: c.call_id,
        run_id: c.run_id,
        step: c.step,
        model: c.model,
        input_tokens: c.input_tokens,
        output_tokens: c.output_tokens,
        cached_input_tokens: c.cached_input_tokens,
        cache_write_tokens: c.cache_write_tokens,
        reasoning_tokens: c.reasoning_tokens,
        latency_ms: c.latency_ms,
        cost_usd: c.cost_usd,
        cost_picousd: stored.cost_picousd,
        cost_source: Some(stored.cost_source),
        timestamp: c.timestamp.unwrap_or_default(),
        cached: c.cached,
        error: c.error,
        metadata: c.metadata,
    }
}

/// Writes one run's lines; returns how many.
fn export_run(conn: &Connection, run_id: &str, out: &mut dyn Write) -> Result<u64> {
    let run = conn
        .prepare_cached(SELECT_RUN)?
        .query_row([run_id], |r| {
            Ok(RunLine {
                run_id: r.get("run_id")?,
                metadata: rows::metadata_from_text(r.get("metadata")?).unwrap_or_else(empty_object),
                status: r.get("status")?,
                started_at: r.get("started_at")?,
                ended_at: r.get("ended_at")?,
            })
        })
        .optional()?
        .ok_or_else(|| Error::UnknownRun {
            run_id: run_id.to_string(),
        })?;
    write_line(out, &Line::Run(run))?;
    let mut lines = 1;
    let mut calls = conn.prepare_cached(SELECT_CALLS)?;
    let llm_sql = format!(
        "SELECT {} FROM llm_calls WHERE call_id = ?1",
        rows::LLM_COLUMNS
    );
    let mut llm = conn.prepare_cached(&llm_sql)?;
    let tool_sql = format!(
        "SELECT {} FROM tool_calls WHERE call_id = ?1",
        rows::TOOL_COLUMNS
    );
    let mut tool = conn.prepare_cached(&tool_sql)?;
    let mut rows_ = calls.query([run_id])?;
    while let Some(r) = rows_.next()? {
        let kind: i64 = r.get(0)?;
        let call_id: String = r.get(1)?;
        let line = if kind == 0 {
            Line::LlmCall(llm_line(llm.query_row([&call_id], rows::llm_call)?))
        } else {
            let t = tool.query_row([&call_id], rows::tool_call)?;
            Line::ToolCall(ToolLine {
                call_id: t.call_id,
                run_id: t.run_id,
                step: t.step,
                tool_name: t.tool_name,
                latency_ms: t.latency_ms,
                success: t.success,
                error: t.error,
                timestamp: t.timestamp.unwrap_or_default(),
                metadata: t.metadata,
            })
        };
        write_line(out, &line)?;
        lines += 1;
    }
    let mut alerts = conn.prepare_cached(SELECT_ALERTS)?;
    let mut rows_ = alerts.query([run_id])?;
    while let Some(r) = rows_.next()? {
        let a = rows::alert(r)?;
        write_line(
            out,
            &Line::Alert(AlertLine {
                run_id: a.run_id,
                metric: a.metric,
                value: a.value,
                threshold: a.threshold,
                call_id: a.call_id,
                fired_at: a.fired_at,
            }),
        )?;
        lines += 1;
    }
    Ok(lines)
}

/// How an import treats bad lines and how often it commits.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// All or nothing: the whole input is one transaction, rolled back if any line is bad.
    pub strict: bool,
    /// Lines per transaction when not strict, at most (default 1,000,000). Larger transactions
    /// import faster: a commit writes every page it changed, and the indexes' pages are changed
    /// again by the next one.
    pub batch_lines: usize,
    /// How long one transaction may hold the write lock, in milliseconds, when not strict
    /// (default 2,000). After each batch the import pauses (twice the batch's time plus 5 ms, at
    /// most 100 ms) so that other writers sharing the file get in: they wait at most about
    /// `batch_max_ms` + 100 ms.
    pub batch_max_ms: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            strict: false,
            batch_lines: 1_000_000,
            batch_max_ms: 2_000,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Runs created or completed.
    pub runs: u64,
    /// LLM calls stored.
    pub llm_calls: u64,
    /// Tool calls stored.
    pub tool_calls: u64,
    /// Alerts restored.
    pub alerts: u64,
    /// Records identical to ones already stored, skipped.
    pub duplicates: u64,
    /// Lines rejected (each reported to the `on_reject` callback).
    pub rejected: u64,
    /// Whether anything was written (false after a strict import with rejected lines).
    pub committed: bool,
}

impl ImportReport {
    /// Adds one batch's counts.
    fn absorb(&mut self, batch: &ImportReport) {
        self.runs += batch.runs;
        self.llm_calls += batch.llm_calls;
        self.tool_calls += batch.tool_calls;
        self.alerts += batch.alerts;
        self.duplicates += batch.duplicates;
        self.rejected += batch.rejected;
    }
}

impl Pipeline {
    /// All records of one run as JSONL text (see [`Pipeline::export_jsonl_to`]).
    ///
    /// # Errors
    /// [`Error::UnknownRun`] for a run that is not stored.
    pub fn export_jsonl(&self, run_id: &str) -> Result<String> {
        let mut out = Vec::new();
        self.export_jsonl_to(run_id, &mut out)?;
        String::from_utf8(out).map_err(|e| Error::Io(std::io::Error::other(e)))
    }

    /// Streams all records of one run to `out`: the run line, its calls by step then timestamp,
    /// then its alerts. Returns the number of lines.
    ///
    /// ```
    /// # use agentobs::{Pipeline, Pricing, ToolCall};
    /// let p = Pipeline::open_in_memory(Pricing::builtin())?;
    /// p.record_tool_call(ToolCall { call_id: "t1".into(), run_id: "r".into(),
    ///     tool_name: "search".into(), latency_ms: 5.0, success: true,
    ///     timestamp: Some(1.0), ..Default::default() })?;
    /// let text = p.export_jsonl("r")?;
    /// assert!(text.starts_with(r#"{"type":"run","run_id":"r""#));
    /// assert_eq!(text.lines().count(), 2);
    /// # Ok::<(), agentobs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownRun`]; [`Error::Io`] when `out` fails.
    pub fn export_jsonl_to(&self, run_id: &str, out: &mut dyn Write) -> Result<u64> {
        self.read(|conn| export_run(conn, run_id, out))
    }

    /// Streams every run started in `[since, until)` (all runs for `None`), oldest first, in
    /// one consistent snapshot. Returns the number of lines.
    ///
    /// # Errors
    /// [`Error::Io`] when `out` fails; storage failures.
    pub fn export_all_jsonl_to(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        self.read(|conn| {
            let mut ids = conn.prepare(SELECT_RUN_IDS)?;
            let mut rows_ = ids.query(params![
                since.unwrap_or(f64::NEG_INFINITY),
                until.unwrap_or(f64::INFINITY)
            ])?;
            let mut lines = 0;
            while let Some(r) = rows_.next()? {
                let run_id: String = r.get(0)?;
                lines += export_run(conn, &run_id, out)?;
            }
            Ok(lines)
        })
    }

    /// Imports JSONL records from `input` (any order, any number of runs), committing every
    /// `batch_lines` lines or `batch_max_ms` (or, with `strict`, all lines in one transaction
    /// that is rolled back if any line is bad). Each rejected line is passed to `on_reject` with
    /// its 1-based line number and the reason, in line order; `on_progress` gets the bytes
    /// applied so far as the import goes. Lines are parsed on a helper thread while this one
    /// writes; memory stays bounded (about 512 KiB of lines in flight, plus the page cache)
    /// whatever the input's size.
    ///
    /// # Errors
    /// [`Error::Io`] when reading fails; storage failures (busy, disk full). A bad line is not
    /// an error: it is counted in [`ImportReport::rejected`] and reported to `on_reject`.
    pub fn import_jsonl(
        &self,
        input: impl BufRead,
        options: &ImportOptions,
        mut on_reject: impl FnMut(u64, &Error),
        mut on_progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        let (pricing, strict_pricing) = (self.pricing(), self.strict_pricing());
        std::thread::scope(|scope| {
            let (to_parser, parser_in) = mpsc::channel::<Chunk>();
            let (parser_out, from_parser) = mpsc::channel::<Chunk>();
            std::thread::Builder::new()
                .name("agentobs-parse".into())
                .spawn_scoped(scope, move || {
                    for mut chunk in parser_in {
                        chunk.parse(pricing, strict_pricing);
                        if parser_out.send(chunk).is_err() {
                            break;
                        }
                    }
                })?;
            let mut chunks = ParsedChunks {
                reader: LineReader::new(input, options.batch_lines.clamp(1, CHUNK_LINES)),
                to_parser,
                from_parser,
                in_flight: 0,
                in_flight_bytes: 0,
            };
            let report = if options.strict {
                self.import_strict(&mut chunks, &mut on_reject, &mut on_progress)
            } else {
                self.import_batches(&mut chunks, options, &mut on_reject, &mut on_progress)
            };
            // Dropping the sender ends the parser thread before the scope joins it.
            drop(chunks.to_parser);
            let mut report = report?;
            report.lines = chunks.reader.line_no;
            Ok(report)
        })
    }

    /// All lines in one transaction, rolled back if any line is bad; every bad line (conflicts
    /// included) is still reported.
    fn import_strict<R: BufRead>(
        &self,
        chunks: &mut ParsedChunks<R>,
        on_reject: &mut dyn FnMut(u64, &Error),
        on_progress: &mut dyn FnMut(u64),
    ) -> Result<ImportReport> {
        let mut rejected = 0;
        let outcome = self.write(|tx| {
            let mut writer = Writer::restoring(tx)?;
            let mut counts = ImportReport::default();
            while let Some(mut chunk) = chunks.next()? {
                apply_chunk(tx, &mut writer, &mut chunk, &mut counts, on_reject)?;
                on_progress(chunk.end_bytes);
            }
            rejected = counts.rejected;
            if rejected > 0 {
                return Err(Error::Jsonl {
                    line: 0,
                    reason: "strict import rolled back".into(),
                });
            }
            writer.finish()?;
            Ok(counts)
        });
        match outcome {
            Ok(counts) => Ok(ImportReport {
                committed: true,
                ..counts
            }),
            Err(Error::Jsonl { line: 0, .. }) if rejected > 0 => Ok(ImportReport {
                rejected,
                ..ImportReport::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Commits every `batch_lines` lines or `batch_max_ms`, whichever comes first.
    fn import_batches<R: BufRead>(
        &self,
        chunks: &mut ParsedChunks<R>,
        options: &ImportOptions,
        on_reject: &mut dyn FnMut(u64, &Error),
        on_progress: &mut dyn FnMut(u64),
    ) -> Result<ImportReport> {
        let max_hold = Duration::from_millis(options.batch_max_ms);
        let mut report = ImportReport::default();
        loop {
            let mut lines = 0;
            // Started before the write lock is asked for: a writer may wait from then on.
            let started = Instant::now();
            let counts = self.write(|tx| {
                let mut writer = Writer::restoring(tx)?;
                let mut counts = ImportReport::default();
                while let Some(mut chunk) = chunks.next()? {
                    lines += chunk.lines.len();
                    apply_chunk(tx, &mut writer, &mut chunk, &mut counts, on_reject)?;
                    on_progress(chunk.end_bytes);
                    if lines >= options.batch_lines || started.elapsed() >= max_hold {
                        break;
                    }
                }
                writer.finish()?;
                Ok(counts)
            })?;
            if lines == 0 {
                return Ok(report);
            }
            report.absorb(&counts);
            report.committed = true;
            if !chunks.reader.done {
                crate::store::yield_to_writers(started.elapsed());
            }
        }
    }
}

/// Parses, validates and (for LLM calls) prices one raw line, without the database.
fn parse_and_prepare(
    pricing: &Pricing,
    strict_pricing: bool,
    raw: RawLine,
    line_no: u64,
) -> Result<Option<Prepped>> {
    let raw = match raw {
        RawLine::Text(t) => t,
        RawLine::TooLong(len) => {
            return Err(Error::Jsonl {
                line: line_no,
                reason: format!("line of {len} bytes is longer than the limit of {MAX_LINE_BYTES}"),
            })
        }
    };
    match parse_line(raw, line_no)? {
        Some(line) => prepare_line(pricing, strict_pricing, line).map(Some),
        None => Ok(None),
    }
}

/// Validates and (for LLM calls) prices one parsed line.
fn prepare_line(pricing: &Pricing, strict_pricing: bool, line: Line) -> Result<Prepped> {
    let mut cost = None;
    match &line {
        Line::Run(r) => {
            crate::record::check_id("run_id", &r.run_id)?;
            crate::record::check_metadata("metadata", &r.metadata)?;
            crate::record::check_finite("started_at", r.started_at)?;
            if r.status.is_empty() {
                return Err(Error::invalid("status", "\"\"", "cannot be empty"));
            }
            if let Some(e) = r.ended_at {
                crate::record::check_finite("ended_at", e)?;
            }
            if (r.status == "running") != r.ended_at.is_none() {
                return Err(Error::invalid(
                    "ended_at",
                    format!("{:?} with status {:?}", r.ended_at, r.status),
                    "a run has an end time exactly when its status is not \"running\"",
                ));
            }
        }
        Line::LlmCall(l) => {
            llm_call_of(l).validate()?;
            cost = Some(cost_of_line(pricing, strict_pricing, l)?);
        }
        Line::ToolCall(t) => tool_call_of(t).validate()?,
        Line::Alert(a) => {
            crate::record::check_id("run_id", &a.run_id)?;
            a.metric.parse::<crate::alerts::Metric>()?;
            crate::record::check_finite("value", a.value)?;
            crate::record::check_finite("threshold", a.threshold)?;
            crate::record::check_finite("fired_at", a.fired_at)?;
        }
    }
    Ok((line, cost))
}

/// The longest line import accepts: a longer one is reported and skipped without being held
/// in memory, so one runaway line cannot exhaust it.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A parsed, validated line ready to apply (and its price, for an LLM call).
type Prepped = (Line, Option<CallCost>);

/// Lines per chunk: the unit read on the caller's thread and parsed on the helper thread.
const CHUNK_LINES: usize = 256;
/// Text per chunk, at most (a longer line makes a chunk of its own).
const CHUNK_BYTES: usize = 1 << 20;
/// Text read ahead of the writer, at most (beyond one chunk).
const READ_AHEAD_BYTES: usize = 512 << 10;

/// Where a line lies in its chunk's text, or how long it was when over [`MAX_LINE_BYTES`].
#[derive(Debug, Clone, Copy)]
enum Span {
    Text { start: usize, end: usize },
    TooLong(u64),
}

/// One raw line: its bytes (with the newline, if any), or how long it was when over the limit.
enum RawLine<'a> {
    Text(&'a [u8]),
    TooLong(u64),
}

/// Consecutive lines: read on the caller's thread, parsed and priced on the helper thread,
/// applied on the caller's thread.
#[derive(Default)]
struct Chunk {
    /// The 1-based number of the first line.
    first_line: u64,
    /// Input bytes read through the end of this chunk.
    end_bytes: u64,
    text: Vec<u8>,
    lines: Vec<Span>,
    /// One result per line once parsed.
    results: Vec<Result<Option<Prepped>>>,
}

impl Chunk {
    fn parse(&mut self, pricing: &Pricing, strict_pricing: bool) {
        self.results.clear();
        for (line_no, span) in (self.first_line..).zip(&self.lines) {
            let raw = match *span {
                Span::Text { start, end } => RawLine::Text(&self.text[start..end]),
                Span::TooLong(len) => RawLine::TooLong(len),
            };
            self.results
                .push(parse_and_prepare(pricing, strict_pricing, raw, line_no));
        }
    }
}

/// Reads lines into chunks.
struct LineReader<R> {
    input: R,
    chunk_lines: usize,
    line_no: u64,
    bytes: u64,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(input: R, chunk_lines: usize) -> Self {
        LineReader {
            input,
            chunk_lines,
            line_no: 0,
            bytes: 0,
            done: false,
        }
    }

    /// The next lines; an empty chunk at the end of the input.
    fn next_chunk(&mut self) -> Result<Chunk> {
        let mut chunk = Chunk {
            first_line: self.line_no + 1,
            ..Chunk::default()
        };
        while !self.done && chunk.lines.len() < self.chunk_lines && chunk.text.len() < CHUNK_BYTES {
            let start = chunk.text.len();
            let mut len = 0u64;
            loop {
                let buf = self.input.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                // A line over the limit is measured, not kept.
                if len + take as u64 <= MAX_LINE_BYTES as u64 {
                    chunk.text.extend_from_slice(&buf[..take]);
                }
                len += take as u64;
                self.input.consume(take);
                if end {
                    break;
                }
            }
            if len == 0 {
                self.done = true;
                break;
            }
            self.bytes += len;
            self.line_no += 1;
            chunk.end_bytes = self.bytes;
            chunk.lines.push(if len > MAX_LINE_BYTES as u64 {
                chunk.text.truncate(start);
                Span::TooLong(len)
            } else {
                Span::Text {
                    start,
                    end: chunk.text.len(),
                }
            });
        }
        Ok(chunk)
    }
}

/// The parsed chunks of an input, in order, with a bounded amount read ahead.
struct ParsedChunks<R> {
    reader: LineReader<R>,
    to_parser: mpsc::Sender<Chunk>,
    from_parser: mpsc::Receiver<Chunk>,
    in_flight: usize,
    in_flight_bytes: usize,
}

impl<R: BufRead> ParsedChunks<R> {
    /// The next parsed chunk; `None` at the end of the input.
    fn next(&mut self) -> Result<Option<Chunk>> {
        while !self.reader.done && (self.in_flight == 0 || self.in_flight_bytes < READ_AHEAD_BYTES)
        {
            let chunk = self.reader.next_chunk()?;
            if chunk.lines.is_empty() {
                break;
            }
            self.in_flight += 1;
            self.in_flight_bytes += chunk.text.len();
            self.to_parser.send(chunk).map_err(|_| parser_stopped())?;
        }
        if self.in_flight == 0 {
            return Ok(None);
        }
        let chunk = self.from_parser.recv().map_err(|_| parser_stopped())?;
        self.in_flight -= 1;
        self.in_flight_bytes -= chunk.text.len();
        Ok(Some(chunk))
    }
}

fn parser_stopped() -> Error {
    Error::Io(std::io::Error::other("the JSONL parser thread stopped"))
}

/// Applies one parsed chunk in the open transaction. Each refused line changes nothing and is
/// reported; only a failure of the storage itself (I/O, busy, disk full, read-only) is an error.
///
/// A line that writes one row needs no savepoint: the statement is atomic, and everything that
/// can refuse the line does so before it (the writer's in-memory state changes after). A line
/// that may write more (a run line, an alert, a call that starts its run) runs under one.
fn apply_chunk(
    tx: &Connection,
    writer: &mut Writer,
    chunk: &mut Chunk,
    counts: &mut ImportReport,
    on_reject: &mut dyn FnMut(u64, &Error),
) -> Result<()> {
    for (line_no, parsed) in (chunk.first_line..).zip(chunk.results.drain(..)) {
        let applied = parsed.and_then(|parsed| {
            let Some((line, cost)) = parsed else {
                return Ok(());
            };
            let one_row = match &line {
                Line::LlmCall(l) => writer.has_run(&l.run_id)?,
                Line::ToolCall(t) => writer.has_run(&t.run_id)?,
                Line::Run(_) | Line::Alert(_) => false,
            };
            let written = if one_row {
                apply_line_inner(tx, writer, &line, cost)
            } else {
                apply_line(tx, writer, &line, cost)
            };
            written.map(|k| count(counts, &line, k))
        });
        match applied {
            Ok(()) => {}
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                counts.rejected += 1;
                on_reject(line_no, &e);
            }
        }
    }
    Ok(())
}

fn count(c: &mut ImportReport, line: &Line, kind: Written) {
    if kind == Written::Duplicate {
        c.duplicates += 1;
        return;
    }
    match line {
        Line::Run(_) => c.runs += 1,
        Line::LlmCall(_) => c.llm_calls += 1,
        Line::ToolCall(_) => c.tool_calls += 1,
        Line::Alert(_) => c.alerts += 1,
    }
}

/// Parses one raw line: `None` for a blank line. Accepts a UTF-8 BOM on the first line and a
/// CRLF ending; a line cut short (no final newline and not valid JSON) is reported as such.
fn parse_line(raw: &[u8], line_no: u64) -> Result<Option<Line>> {
    let complete = raw.ends_with(b"\n");
    let mut text = raw;
    if line_no == 1 {
        text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    }
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let jsonl = |reason: String| Error::Jsonl {
        line: line_no,
        reason,
    };
    // One pass, straight into the typed line: duplicate keys, unknown fields, a missing or
    // unknown "type" and mistyped values are all errors naming the field.
    serde_json::from_slice::<Line>(text).map(Some).map_err(|e| {
        let reason = if !complete && e.is_eof() {
            format!("incomplete last line (no newline, JSON cut short): {e}")
        } else if e.is_syntax() || e.is_eof() {
            format!("invalid JSON: {e}")
        } else if e.to_string().contains("unknown variant") {
            format!("unknown type: {e}")
        } else {
            format!("invalid record: {e}")
        };
        jsonl(reason)
    })
}

fn llm_call_of(l: &LlmLine) -> LlmCall {
    LlmCall {
        call_id: l.call_id.clone(),
        run_id: l.run_id.clone(),
        step: l.step,
        model: l.model.clone(),
        input_tokens: l.input_tokens,
        output_tokens: l.output_tokens,
        latency_ms: l.latency_ms,
        cost_usd: l.cost_usd,
        timestamp: Some(l.timestamp),
        cached: l.cached,
        cached_input_tokens: l.cached_input_tokens,
        cache_write_tokens: l.cache_write_tokens,
        reasoning_tokens: l.reasoning_tokens,
        error: l.error.clone(),
        metadata: l.metadata.clone(),
    }
}

fn tool_call_of(t: &ToolLine) -> ToolCall {
    ToolCall {
        call_id: t.call_id.clone(),
        run_id: t.run_id.clone(),
        step: t.step,
        tool_name: t.tool_name.clone(),
        latency_ms: t.latency_ms,
        success: t.success,
        error: t.error.clone(),
        timestamp: Some(t.timestamp),
        metadata: t.metadata.clone(),
    }
}

/// The cost a line restores: its exact origin when the line says it (`cost_source`), else the
/// rule of a live record (a given `cost_usd` is kept; none is priced from the table).
fn cost_of_line(pricing: &Pricing, strict_pricing: bool, l: &LlmLine) -> Result<CallCost> {
    let invalid = |reason: &str| {
        Error::invalid(
            "cost_source",
            format!(
                "{:?} with cost_usd {:?}, cost_picousd {:?}",
                l.cost_source, l.cost_usd, l.cost_picousd
            ),
            reason,
        )
    };
    match (l.cost_source.as_deref(), l.cost_usd, l.cost_picousd) {
        (Some("unpriced"), None, None) => Ok(CallCost::Unpriced),
        (Some("unpriced"), _, _) => Err(invalid("an unpriced call has no cost")),
        (Some("computed"), Some(_), Some(picousd)) if picousd >= 0 => {
            Ok(CallCost::Computed { picousd })
        }
        (Some("given"), Some(usd), Some(picousd)) if picousd >= 0 && usd >= 0.0 => {
            Ok(CallCost::Given { usd, picousd })
        }
        (Some("computed" | "given"), _, _) => {
            Err(invalid("needs a non-negative cost_usd and cost_picousd"))
        }
        (Some(_), _, _) => Err(invalid("expected \"given\", \"computed\" or \"unpriced\"")),
        (None, _, Some(_)) => Err(invalid("cost_picousd needs cost_source")),
        (None, _, None) => write::price_call(pricing, strict_pricing, &llm_call_of(l), l.timestamp),
    }
}

const INSERT_ALERT: &str =
    "INSERT INTO alerts (run_id, metric, value, threshold, call_id, fired_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id, metric) DO NOTHING";
const SELECT_ALERT: &str = "SELECT run_id, metric, value, threshold, call_id, fired_at FROM alerts
    WHERE run_id = ?1 AND metric = ?2";
const INSERT_PLACEHOLDER_RUN: &str = "INSERT INTO runs (run_id, started_at) VALUES (?1, ?2)
    ON CONFLICT (run_id) DO NOTHING";

/// Applies one line under a savepoint, so that a bad line leaves nothing behind.
fn apply_line(
    tx: &Connection,
    w: &mut Writer,
    line: &Line,
    cost: Option<CallCost>,
) -> Result<Written> {
    tx.prepare_cached("SAVEPOINT line")?.execute([])?;
    w.mark();
    match apply_line_inner(tx, w, line, cost) {
        Ok(k) => {
            w.release_mark();
            tx.prepare_cached("RELEASE line")?.execute([])?;
            Ok(k)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO line; RELEASE line")?;
            w.rollback_to_mark();
            Err(e)
        }
    }
}

fn apply_line_inner(
    tx: &Connection,
    w: &mut Writer,
    line: &Line,
    cost: Option<CallCost>,
) -> Result<Written> {
    match line {
        Line::LlmCall(l) => {
            let cost = cost.unwrap_or(CallCost::Unpriced);
            w.llm(&llm_call_of(l), l.timestamp, cost)
        }
        Line::ToolCall(t) => w.tool(&tool_call_of(t), t.timestamp),
        Line::Run(r) => restore_run(tx, w, r),
        Line::Alert(a) => {
            tx.prepare_cached(INSERT_PLACEHOLDER_RUN)?
                .execute(params![a.run_id, a.fired_at])?;
            let n = tx.prepare_cached(INSERT_ALERT)?.execute(params![
                a.run_id,
                a.metric,
                a.value,
                a.threshold,
                a.call_id,
                a.fired_at
            ])?;
            if n == 1 {
                return Ok(Written::Inserted);
            }
            let old: Alert = tx
                .prepare_cached(SELECT_ALERT)?
                .query_row(params![a.run_id, a.metric], rows::alert)?;
            if old.value == a.value
                && old.threshold == a.threshold
                && old.call_id == a.call_id
                && old.fired_at == a.fired_at
            {
                Ok(Written::Duplicate)
            } else {
                Err(Error::ConflictingDuplicate {
                    kind: "alert",
                    call_id: format!("{} / {}", a.run_id, a.metric),
                    field: "value",
                })
            }
        }
    }
}

/// Creates or completes a run from its line. A run that exists as a placeholder (running, with
/// empty or the same metadata) takes the line's fields; an identical run is a duplicate; any
/// other difference is a conflict.
fn restore_run(tx: &Connection, w: &mut Writer, r: &RunLine) -> Result<Written> {
    let existing = tx
        .prepare_cached(SELECT_RUN)?
        .query_row([&r.run_id], |row| {
            Ok((
                rows::metadata_from_text(row.get("metadata")?).unwrap_or_else(empty_object),
                row.get::<_, String>("status")?,
                row.get::<_, f64>("started_at")?,
                row.get::<_, Option<f64>>("ended_at")?,
            ))
        })
        .optional()?;
    let metadata = r.metadata.to_string();
    match existing {
        None => {
            w.apply(&Prepared::Start {
                run_id: r.run_id.clone(),
                metadata,
                started_at: r.started_at,
            })?;
        }
        Some((m, status, started_at, ended_at)) => {
            if m == r.metadata
                && status == r.status
                && started_at == r.started_at
                && ended_at == r.ended_at
            {
                return Ok(Written::Duplicate);
            }
            let placeholder = status == "running" && (m == empty_object() || m == r.metadata);
            if !placeholder {
                return Err(Error::ConflictingDuplicate {
                    kind: "run",
                    call_id: r.run_id.clone(),
                    field: if m != r.metadata {
                        "metadata"
                    } else {
                        "status"
                    },
                });
            }
            w.restart_run(&r.run_id, &metadata, r.started_at)?;
        }
    }
    if let Some(ended_at) = r.ended_at {
        w.apply(&Prepared::End {
            run_id: r.run_id.clone(),
            status: r.status.clone(),
            ended_at,
        })?;
    }
    Ok(Written::Inserted)
}
