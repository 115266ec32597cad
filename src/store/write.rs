//! The write path: one record into one open `BEGIN IMMEDIATE` transaction.
//!
//! Each write inserts the record, updates its run's rollup row, adds it to the latency histogram
//! and evaluates the alert rules against the new rollup, all in the caller's transaction: either
//! everything of a call lands or nothing does. Rollups are read, added in Rust with overflow
//! checks, and written back whole; the write lock held since `BEGIN IMMEDIATE` makes that
//! read-modify-write safe across threads and processes. Within one transaction the writer keeps
//! each touched run's rollup and the histogram increments in memory and writes them once at
//! [`Writer::finish`], so a batch of 1,000 calls costs one rollup update per run, not 1,000.

use std::collections::HashMap;

use rusqlite::{named_params, params, Connection, OptionalExtension};

use crate::alerts::{self, AlertRule, RunTotals};
use crate::error::{Error, Result};
use crate::percentile;
use crate::pricing::{picousd_to_usd, usd_to_picousd, Pricing};
use crate::record::{self, Alert, LlmCall, Record, ToolCall};

use super::rows;

/// Where an LLM call's cost comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CallCost {
    /// Given by the caller: kept as given (`usd`), summed as `picousd`.
    Given { usd: f64, picousd: i64 },
    /// Computed from the pricing table (0 for response-cache hits).
    Computed { picousd: i64 },
    /// The model is unknown: no cost, counted as unpriced.
    Unpriced,
}

impl CallCost {
    pub(crate) fn source(&self) -> &'static str {
        match self {
            CallCost::Given { .. } => "given",
            CallCost::Computed { .. } => "computed",
            CallCost::Unpriced => "unpriced",
        }
    }

    pub(crate) fn picousd(&self) -> Option<i64> {
        match *self {
            CallCost::Given { picousd, .. } | CallCost::Computed { picousd } => Some(picousd),
            CallCost::Unpriced => None,
        }
    }

    pub(crate) fn usd(&self) -> Option<f64> {
        match *self {
            CallCost::Given { usd, .. } => Some(usd),
            CallCost::Computed { picousd } => Some(picousd_to_usd(picousd as i128)),
            CallCost::Unpriced => None,
        }
    }
}

/// Prices a validated call at `timestamp`. Pure: no database.
pub(crate) fn price_call(
    pricing: &Pricing,
    strict: bool,
    call: &LlmCall,
    timestamp: f64,
) -> Result<CallCost> {
    if let Some(usd) = call.cost_usd {
        let picousd = usd_to_picousd(usd)
            .and_then(|p| i64::try_from(p).ok())
            .ok_or_else(|| {
                Error::invalid(
                    "cost_usd",
                    usd,
                    "beyond the per-call limit of 9.2 million USD",
                )
            })?;
        return Ok(CallCost::Given { usd, picousd });
    }
    if call.cached {
        return Ok(CallCost::Computed { picousd: 0 });
    }
    let cost = if strict {
        Some(pricing.cost(&call.model, &call.usage(), Some(timestamp))?)
    } else {
        pricing.cost_if_priced(&call.model, &call.usage(), Some(timestamp))?
    };
    Ok(match cost {
        Some(cost) => CallCost::Computed {
            picousd: cost.total_picousd,
        },
        None => CallCost::Unpriced,
    })
}

/// A record validated and priced, ready for [`Writer::apply`].
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    Llm(LlmCall, f64, CallCost),
    Tool(ToolCall, f64),
    Start {
        run_id: String,
        metadata: String,
        started_at: f64,
    },
    End {
        run_id: String,
        status: String,
        ended_at: f64,
    },
}

/// Validates and prices a record without touching the database, filling "now" for missing times.
pub(crate) fn prepare(pricing: &Pricing, strict: bool, r: Record, now: f64) -> Result<Prepared> {
    Ok(match r {
        Record::Llm(c) => {
            c.validate()?;
            let ts = c.timestamp.unwrap_or(now);
            let cost = price_call(pricing, strict, &c, ts)?;
            Prepared::Llm(c, ts, cost)
        }
        Record::Tool(c) => {
            c.validate()?;
            let ts = c.timestamp.unwrap_or(now);
            Prepared::Tool(c, ts)
        }
        Record::StartRun {
            run_id,
            metadata,
            started_at,
        } => {
            record::check_id("run_id", &run_id)?;
            record::check_metadata("metadata", &metadata)?;
            let started_at = started_at.unwrap_or(now);
            record::check_finite("started_at", started_at)?;
            Prepared::Start {
                run_id,
                metadata: metadata.to_string(),
                started_at,
            }
        }
        Record::EndRun {
            run_id,
            status,
            ended_at,
        } => {
            record::check_id("run_id", &run_id)?;
            record::check_final_status(&status)?;
            let ended_at = ended_at.unwrap_or(now);
            record::check_finite("ended_at", ended_at)?;
            Prepared::End {
                run_id,
                status,
                ended_at,
            }
        }
    })
}

/// The rollup columns of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rollup {
    pub llm_calls: i64,
    pub tool_calls: i64,
    pub tool_errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_calls: i64,
    pub unpriced_calls: i64,
    pub unpriced_tokens: i64,
    pub cost_picousd: i64,
}

impl Rollup {
    pub(crate) fn totals(&self) -> RunTotals {
        RunTotals {
            llm_calls: self.llm_calls,
            tool_calls: self.tool_calls,
            tool_errors: self.tool_errors,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_picousd: self.cost_picousd,
        }
    }

    /// Adds `delta` field by field (negative deltas subtract, for re-pricing).
    pub(crate) fn add(&self, d: &Rollup, run_id: &str) -> Result<Rollup> {
        let f = |a: i64, b: i64| {
            a.checked_add(b).ok_or_else(|| {
                Error::invalid(
                    "run_id",
                    run_id,
                    "the run's totals would exceed the ledger's 64-bit limits",
                )
            })
        };
        Ok(Rollup {
            llm_calls: f(self.llm_calls, d.llm_calls)?,
            tool_calls: f(self.tool_calls, d.tool_calls)?,
            tool_errors: f(self.tool_errors, d.tool_errors)?,
            input_tokens: f(self.input_tokens, d.input_tokens)?,
            output_tokens: f(self.output_tokens, d.output_tokens)?,
            cached_calls: f(self.cached_calls, d.cached_calls)?,
            unpriced_calls: f(self.unpriced_calls, d.unpriced_calls)?,
            unpriced_tokens: f(self.unpriced_tokens, d.unpriced_tokens)?,
            cost_picousd: f(self.cost_picousd, d.cost_picousd)?,
        })
    }

    /// The same amounts with the opposite sign.
    pub(crate) fn negated(&self) -> Rollup {
        Rollup {
            llm_calls: -self.llm_calls,
            tool_calls: -self.tool_calls,
            tool_errors: -self.tool_errors,
            input_tokens: -self.input_tokens,
            output_tokens: -self.output_tokens,
            cached_calls: -self.cached_calls,
            unpriced_calls: -self.unpriced_calls,
            unpriced_tokens: -self.unpriced_tokens,
            cost_picousd: -self.cost_picousd,
        }
    }

    /// What one LLM call adds.
    pub(crate) fn of_llm(call: &LlmCall, cost: &CallCost) -> Rollup {
        let unpriced = cost.picousd().is_none();
        Rollup {
            llm_calls: 1,
            input_tokens: call.input_tokens,
            output_tokens: call.output_tokens,
            cached_calls: i64::from(call.cached),
            unpriced_calls: i64::from(unpriced),
            unpriced_tokens: if unpriced {
                call.input_tokens.saturating_add(call.output_tokens)
            } else {
                0
            },
            cost_picousd: cost.picousd().unwrap_or(0),
            ..Rollup::default()
        }
    }
}

/// A run as the write path sees it.
#[derive(Debug, Clone)]
pub(crate) struct RunState {
    pub status: String,
    pub rollup: Rollup,
    /// The UTC day of the run's start: its row in `daily_totals`.
    pub day: String,
}

/// `YYYY-MM-DD` (UTC) of an epoch-seconds time; the key of `daily_totals`.
pub(crate) fn day_of(epoch_s: f64) -> String {
    chrono::DateTime::from_timestamp(epoch_s.floor().clamp(-8e15, 8e15) as i64, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "out of range".to_string())
}

const SELECT_RUN: &str = "SELECT status, started_at, llm_calls, tool_calls, tool_errors,
    input_tokens, output_tokens, cached_calls, unpriced_calls, unpriced_tokens, cost_picousd
    FROM runs WHERE run_id = ?1";

pub(crate) fn load_run(conn: &Connection, run_id: &str) -> Result<Option<RunState>> {
    let mut stmt = conn.prepare_cached(SELECT_RUN)?;
    let run = stmt
        .query_row([run_id], |r| {
            Ok(RunState {
                status: r.get("status")?,
                day: day_of(r.get("started_at")?),
                rollup: Rollup {
                    llm_calls: r.get("llm_calls")?,
                    tool_calls: r.get("tool_calls")?,
                    tool_errors: r.get("tool_errors")?,
                    input_tokens: r.get("input_tokens")?,
                    output_tokens: r.get("output_tokens")?,
                    cached_calls: r.get("cached_calls")?,
                    unpriced_calls: r.get("unpriced_calls")?,
                    unpriced_tokens: r.get("unpriced_tokens")?,
                    cost_picousd: r.get("cost_picousd")?,
                },
            })
        })
        .optional()?;
    Ok(run)
}

const UPDATE_ROLLUP: &str = "UPDATE runs SET llm_calls = :llm_calls, tool_calls = :tool_calls,
    tool_errors = :tool_errors, input_tokens = :input_tokens, output_tokens = :output_tokens,
    cached_calls = :cached_calls, unpriced_calls = :unpriced_calls,
    unpriced_tokens = :unpriced_tokens, cost_picousd = :cost_picousd, cost_usd = :cost_usd
    WHERE run_id = :run_id";

pub(crate) fn store_rollup(conn: &Connection, run_id: &str, r: &Rollup) -> Result<()> {
    conn.prepare_cached(UPDATE_ROLLUP)?.execute(named_params! {
        ":run_id": run_id,
        ":llm_calls": r.llm_calls,
        ":tool_calls": r.tool_calls,
        ":tool_errors": r.tool_errors,
        ":input_tokens": r.input_tokens,
        ":output_tokens": r.output_tokens,
        ":cached_calls": r.cached_calls,
        ":unpriced_calls": r.unpriced_calls,
        ":unpriced_tokens": r.unpriced_tokens,
        ":cost_picousd": r.cost_picousd,
        ":cost_usd": picousd_to_usd(r.cost_picousd as i128),
    })?;
    Ok(())
}

const UPSERT_HISTOGRAM: &str = "INSERT INTO latency_histogram (series, key, bucket, calls, errors,
    cached_calls, unpriced_calls, input_tokens, output_tokens, cost_microusd, cost_rem_picousd)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (series, key, bucket) DO UPDATE SET
        calls = calls + excluded.calls,
        errors = errors + excluded.errors,
        cached_calls = cached_calls + excluded.cached_calls,
        unpriced_calls = unpriced_calls + excluded.unpriced_calls,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cost_microusd = cost_microusd + excluded.cost_microusd,
        cost_rem_picousd = cost_rem_picousd + excluded.cost_rem_picousd";

const UPSERT_DAILY: &str = "INSERT INTO daily_totals (day, status, runs, llm_calls, tool_calls,
    tool_errors, cached_calls, unpriced_calls, input_tokens_hi, input_tokens_lo, output_tokens_hi,
    output_tokens_lo, unpriced_tokens_hi, unpriced_tokens_lo, cost_microusd, cost_rem_picousd)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
    ON CONFLICT (day, status) DO UPDATE SET
        runs = runs + excluded.runs,
        llm_calls = llm_calls + excluded.llm_calls,
        tool_calls = tool_calls + excluded.tool_calls,
        tool_errors = tool_errors + excluded.tool_errors,
        cached_calls = cached_calls + excluded.cached_calls,
        unpriced_calls = unpriced_calls + excluded.unpriced_calls,
        input_tokens_hi = input_tokens_hi + excluded.input_tokens_hi,
        input_tokens_lo = input_tokens_lo + excluded.input_tokens_lo,
        output_tokens_hi = output_tokens_hi + excluded.output_tokens_hi,
        output_tokens_lo = output_tokens_lo + excluded.output_tokens_lo,
        unpriced_tokens_hi = unpriced_tokens_hi + excluded.unpriced_tokens_hi,
        unpriced_tokens_lo = unpriced_tokens_lo + excluded.unpriced_tokens_lo,
        cost_microusd = cost_microusd + excluded.cost_microusd,
        cost_rem_picousd = cost_rem_picousd + excluded.cost_rem_picousd";

/// A change to one `daily_totals` row: runs moved in or out, and their rollups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DailyDelta {
    pub runs: i64,
    pub rollup: Rollup,
}

impl DailyDelta {
    fn negated(&self) -> DailyDelta {
        DailyDelta {
            runs: -self.runs,
            rollup: self.rollup.negated(),
        }
    }

    /// runs, llm_calls, tool_calls, tool_errors, cached_calls, unpriced_calls, input_tokens,
    /// output_tokens, unpriced_tokens, cost_picousd.
    fn fields(&self) -> [i128; 10] {
        let r = &self.rollup;
        [
            self.runs,
            r.llm_calls,
            r.tool_calls,
            r.tool_errors,
            r.cached_calls,
            r.unpriced_calls,
            r.input_tokens,
            r.output_tokens,
            r.unpriced_tokens,
            r.cost_picousd,
        ]
        .map(i128::from)
    }
}

/// The sum of many `DailyDelta`s in one transaction (128 bits: many runs can add up past 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DailySum([i128; 10]);

impl DailySum {
    fn add(&mut self, d: &DailyDelta) {
        for (a, b) in self.0.iter_mut().zip(d.fields()) {
            *a += b;
        }
    }
}

fn store_daily(conn: &Connection, day: &str, status: &str, d: &DailySum) -> Result<()> {
    const TOKENS: i128 = 1_000_000_000;
    const MICRO: i128 = 1_000_000;
    let fit = |v: i128| {
        i64::try_from(v).map_err(|_| {
            Error::invalid(
                "started_at",
                day,
                "the day's totals would exceed 64-bit limits",
            )
        })
    };
    let [runs, llm, tool, errors, cached, unpriced, input, output, unpriced_tokens, cost] = d.0;
    conn.prepare_cached(UPSERT_DAILY)?.execute(params![
        day,
        status,
        fit(runs)?,
        fit(llm)?,
        fit(tool)?,
        fit(errors)?,
        fit(cached)?,
        fit(unpriced)?,
        fit(input.div_euclid(TOKENS))?,
        fit(input.rem_euclid(TOKENS))?,
        fit(output.div_euclid(TOKENS))?,
        fit(output.rem_euclid(TOKENS))?,
        fit(unpriced_tokens.div_euclid(TOKENS))?,
        fit(unpriced_tokens.rem_euclid(TOKENS))?,
        fit(cost.div_euclid(MICRO))?,
        fit(cost.rem_euclid(MICRO))?,
    ])?;
    Ok(())
}

/// One histogram contribution (negative values subtract, for re-pricing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HistogramDelta {
    pub calls: i64,
    pub errors: i64,
    pub cached_calls: i64,
    pub unpriced_calls: i64,
    // Sums of many calls within one transaction: 128 bits, checked when stored.
    pub input_tokens: i128,
    pub output_tokens: i128,
    pub cost_picousd: i128,
}

impl HistogramDelta {
    fn negated(&self) -> HistogramDelta {
        HistogramDelta {
            calls: -self.calls,
            errors: -self.errors,
            cached_calls: -self.cached_calls,
            unpriced_calls: -self.unpriced_calls,
            input_tokens: -self.input_tokens,
            output_tokens: -self.output_tokens,
            cost_picousd: -self.cost_picousd,
        }
    }
}

impl std::ops::AddAssign for HistogramDelta {
    fn add_assign(&mut self, d: HistogramDelta) {
        self.calls += d.calls;
        self.errors += d.errors;
        self.cached_calls += d.cached_calls;
        self.unpriced_calls += d.unpriced_calls;
        self.input_tokens += d.input_tokens;
        self.output_tokens += d.output_tokens;
        self.cost_picousd += d.cost_picousd;
    }
}

/// Adds one contribution to a histogram row (`bucket` from [`percentile::bucket`]).
pub(crate) fn add_to_histogram(
    conn: &Connection,
    series: &str,
    key: &str,
    bucket: i64,
    d: &HistogramDelta,
) -> Result<()> {
    let fit = |v: i128| {
        i64::try_from(v).map_err(|_| {
            Error::invalid(
                "model",
                key,
                "this model's totals would exceed the ledger's 64-bit limits",
            )
        })
    };
    conn.prepare_cached(UPSERT_HISTOGRAM)?.execute(params![
        series,
        key,
        bucket,
        d.calls,
        d.errors,
        d.cached_calls,
        d.unpriced_calls,
        fit(d.input_tokens)?,
        fit(d.output_tokens)?,
        fit(d.cost_picousd.div_euclid(1_000_000))?,
        fit(d.cost_picousd.rem_euclid(1_000_000))?,
    ])?;
    Ok(())
}

/// Whether a write stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// A new record.
    Inserted,
    /// The same record was already stored (a retry); nothing changed.
    Duplicate,
}

/// Writes records into one open write transaction and collects the alerts they fire.
pub(crate) struct Writer<'c> {
    conn: &'c Connection,
    rules: Vec<AlertRule>,
    fired: Vec<Alert>,
    now: f64,
    /// Runs touched in this transaction, with their current state; `true` when the rollup
    /// changed and must be written at `finish`.
    runs: HashMap<String, (RunState, bool)>,
    /// Histogram increments, written at `finish`.
    histogram: HashMap<HistogramKey, HistogramDelta>,
    /// `daily_totals` increments by (day, status), written at `finish`.
    daily: HashMap<(String, String), DailySum>,
    /// Import: records may join ended runs (their run line came first).
    restoring: bool,
    /// Whether the current line's in-memory changes are journaled, to be undone (`mark` /
    /// `rollback_to_mark`) when its savepoint is rolled back.
    journaling: bool,
    journal: Vec<Undo>,
}

type HistogramKey = (&'static str, String, i64);

/// How to undo one in-memory change of a rolled-back import line.
enum Undo {
    /// The run entered the cache with this line (its row was inserted by it): forget it.
    Forget(String),
    /// The run's cached state before this line changed it.
    Restore(String, RunState, bool),
    /// A histogram increment to take back.
    Histogram(HistogramKey, HistogramDelta),
    /// A `daily_totals` increment to take back.
    Daily((String, String), DailyDelta),
}

const INSERT_LLM: &str = "INSERT INTO llm_calls (call_id, run_id, step, model, input_tokens,
    output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, latency_ms, cost_usd,
    cost_picousd, cost_source, timestamp, cached, error, metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
    ON CONFLICT (call_id) DO NOTHING";

const INSERT_TOOL: &str = "INSERT INTO tool_calls (call_id, run_id, step, tool_name, latency_ms,
    success, error, timestamp, metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (call_id) DO NOTHING";

const UPDATE_COST: &str = "UPDATE llm_calls SET cost_usd = ?2, cost_picousd = ?3, cost_source = ?4
    WHERE call_id = ?1";

const INSERT_ALERT: &str =
    "INSERT INTO alerts (run_id, metric, value, threshold, call_id, fired_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id, metric) DO NOTHING";

const SELECT_RULES: &str = "SELECT metric, threshold, min_calls FROM alert_rules ORDER BY metric";

const INSERT_RUN: &str = "INSERT INTO runs (run_id, metadata, started_at) VALUES (?1, ?2, ?3)
    ON CONFLICT (run_id) DO NOTHING";
const END_RUN: &str = "UPDATE runs SET status = ?2, ended_at = ?3, duration_ms = ?4
    WHERE run_id = ?1";
const RESTART_RUN: &str = "UPDATE runs SET metadata = ?2, started_at = ?3 WHERE run_id = ?1";
const SELECT_STARTED_AT: &str = "SELECT started_at FROM runs WHERE run_id = ?1";

const INSERT_IMPLICIT_RUN: &str = "INSERT INTO runs (run_id, started_at) VALUES (?1, ?2)";

fn metadata_text(m: &Option<serde_json::Value>) -> Option<String> {
    m.as_ref().map(serde_json::Value::to_string)
}

/// Loads the alert rules in force (read inside the write transaction, so a rule set by another
/// process applies from its commit on).
pub(crate) fn load_rules(conn: &Connection) -> Result<Vec<AlertRule>> {
    let mut stmt = conn.prepare_cached(SELECT_RULES)?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>("metric")?,
            r.get::<_, f64>("threshold")?,
            r.get::<_, i64>("min_calls")?,
        ))
    })?;
    let mut rules = Vec::new();
    for row in rows {
        let (metric, threshold, min_calls) = row?;
        // A metric written by a newer version is skipped, not fatal: it cannot be evaluated here.
        if let Ok(metric) = metric.parse() {
            rules.push(AlertRule {
                metric,
                threshold,
                min_calls,
            });
        }
    }
    Ok(rules)
}

impl<'c> Writer<'c> {
    /// A writer over `conn`, which must be inside a write transaction. With `evaluate_alerts`
    /// false (import), no rule is evaluated.
    pub(crate) fn new(conn: &'c Connection, evaluate_alerts: bool) -> Result<Writer<'c>> {
        let rules = if evaluate_alerts {
            load_rules(conn)?
        } else {
            Vec::new()
        };
        Ok(Writer {
            conn,
            rules,
            fired: Vec::new(),
            now: crate::record::now(),
            runs: HashMap::new(),
            histogram: HashMap::new(),
            daily: HashMap::new(),
            restoring: false,
            journaling: false,
            journal: Vec::new(),
        })
    }

    /// A writer that restores history (JSONL import): no alert is evaluated and calls may join
    /// ended runs. A line that writes more than once is applied between [`Writer::mark`] and
    /// [`Writer::release_mark`] or [`Writer::rollback_to_mark`] (the caller holds a savepoint).
    pub(crate) fn restoring(conn: &'c Connection) -> Result<Writer<'c>> {
        let mut w = Writer::new(conn, false)?;
        w.restoring = true;
        Ok(w)
    }

    /// Starts journaling a line's in-memory changes, so that they can be undone.
    pub(crate) fn mark(&mut self) {
        self.journal.clear();
        self.journaling = true;
    }

    /// Keeps the line's changes and stops journaling.
    pub(crate) fn release_mark(&mut self) {
        self.journal.clear();
        self.journaling = false;
    }

    /// Whether the run exists (in this transaction's cache or the database).
    pub(crate) fn has_run(&mut self, run_id: &str) -> Result<bool> {
        Ok(self.run_state(run_id)?.is_some())
    }

    /// Undoes the in-memory changes since [`Writer::mark`] (the caller rolled back the
    /// savepoint that held their database side).
    pub(crate) fn rollback_to_mark(&mut self) {
        while let Some(undo) = self.journal.pop() {
            match undo {
                Undo::Forget(run_id) => {
                    self.runs.remove(&run_id);
                }
                Undo::Restore(run_id, state, dirty) => {
                    self.runs.insert(run_id, (state, dirty));
                }
                Undo::Histogram(key, d) => {
                    if let Some(v) = self.histogram.get_mut(&key) {
                        *v += d.negated();
                    }
                }
                Undo::Daily(key, d) => {
                    if let Some(v) = self.daily.get_mut(&key) {
                        v.add(&d.negated());
                    }
                }
            }
        }
        self.journaling = false;
    }

    fn remember(&mut self, undo: impl FnOnce(&Self) -> Option<Undo>) {
        if self.journaling {
            if let Some(u) = undo(self) {
                self.journal.push(u);
            }
        }
    }

    fn remember_run(&mut self, run_id: &str) {
        self.remember(|w| {
            w.runs
                .get(run_id)
                .map(|(state, dirty)| Undo::Restore(run_id.to_string(), state.clone(), *dirty))
        });
    }

    /// Writes the rollups and histogram increments kept in memory; returns the fired alerts.
    /// Must be called before the transaction commits.
    pub(crate) fn finish(self) -> Result<Vec<Alert>> {
        for (run_id, (state, dirty)) in &self.runs {
            if *dirty {
                store_rollup(self.conn, run_id, &state.rollup)?;
            }
        }
        for ((series, key, bucket), d) in &self.histogram {
            add_to_histogram(self.conn, series, key, *bucket, d)?;
        }
        for ((day, status), d) in &self.daily {
            if *d != DailySum::default() {
                store_daily(self.conn, day, status, d)?;
            }
        }
        Ok(self.fired)
    }

    fn histogram_add(&mut self, series: &'static str, key: &str, value: f64, d: HistogramDelta) {
        let k = (series, key.to_string(), percentile::bucket(value));
        if self.journaling {
            self.journal.push(Undo::Histogram(k.clone(), d));
        }
        *self.histogram.entry(k).or_default() += d;
    }

    /// Adds to a `daily_totals` row. Running runs have none: they are summed live by the
    /// dashboard (a file has few at a time), so a call recorded into a running run costs no
    /// write here, and a run enters its day's row once, when it ends.
    fn daily_add(&mut self, day: &str, status: &str, d: DailyDelta) {
        if status == "running" {
            return;
        }
        let key = (day.to_string(), status.to_string());
        if self.journaling {
            self.journal.push(Undo::Daily(key.clone(), d));
        }
        self.daily.entry(key).or_default().add(&d);
    }

    /// A run's state: from this transaction's cache, else from the database.
    fn run_state(&mut self, run_id: &str) -> Result<Option<&mut (RunState, bool)>> {
        if !self.runs.contains_key(run_id) {
            match load_run(self.conn, run_id)? {
                Some(state) => {
                    self.runs.insert(run_id.to_string(), (state, false));
                }
                None => return Ok(None),
            }
        }
        Ok(self.runs.get_mut(run_id))
    }

    /// Applies one prepared record.
    pub(crate) fn apply(&mut self, p: &Prepared) -> Result<Written> {
        match p {
            Prepared::Llm(c, ts, cost) => self.llm(c, *ts, *cost),
            Prepared::Tool(c, ts) => self.tool(c, *ts),
            Prepared::Start {
                run_id,
                metadata,
                started_at,
            } => {
                let n = self
                    .conn
                    .prepare_cached(INSERT_RUN)?
                    .execute(params![run_id, metadata, started_at])?;
                if n == 0 {
                    return Err(Error::RunExists {
                        run_id: run_id.to_string(),
                    });
                }
                let one = DailyDelta {
                    runs: 1,
                    ..DailyDelta::default()
                };
                self.daily_add(&day_of(*started_at), "running", one);
                Ok(Written::Inserted)
            }
            Prepared::End {
                run_id,
                status,
                ended_at,
            } => {
                self.end(run_id, status, *ended_at)?;
                Ok(Written::Inserted)
            }
        }
    }

    /// Ends a run: status, end time, duration, and the run-duration histogram.
    fn end(&mut self, run_id: &str, status: &str, ended_at: f64) -> Result<()> {
        let Some((run, dirty)) = self.run_state(run_id)? else {
            return Err(Error::UnknownRun {
                run_id: run_id.to_string(),
            });
        };
        if run.status != "running" {
            return Err(Error::RunEnded {
                run_id: run_id.to_string(),
                status: run.status.clone(),
            });
        }
        let previous = (run.clone(), *dirty);
        run.status = status.to_string();
        let moved = DailyDelta {
            runs: 1,
            rollup: run.rollup,
        };
        let day = run.day.clone();
        if self.journaling {
            self.journal
                .push(Undo::Restore(run_id.to_string(), previous.0, previous.1));
        }
        self.daily_add(&day, "running", moved.negated());
        self.daily_add(&day, status, moved);
        let started_at: f64 = self
            .conn
            .prepare_cached(SELECT_STARTED_AT)?
            .query_row([run_id], |r| r.get(0))?;
        let duration_ms = (ended_at - started_at) * 1000.0;
        self.conn.prepare_cached(END_RUN)?.execute(params![
            run_id,
            status,
            ended_at,
            duration_ms
        ])?;
        self.histogram_add(
            "run",
            "",
            duration_ms,
            HistogramDelta {
                calls: 1,
                ..Default::default()
            },
        );
        Ok(())
    }

    /// The run's status and rollup, started implicitly (status `running`, empty metadata) when
    /// unknown.
    fn run_for_record(&mut self, run_id: &str, timestamp: f64) -> Result<(String, Rollup)> {
        if let Some((run, _)) = self.run_state(run_id)? {
            return Ok((run.status.clone(), run.rollup));
        }
        self.conn
            .prepare_cached(INSERT_IMPLICIT_RUN)?
            .execute(params![run_id, timestamp])?;
        let state = RunState {
            status: "running".into(),
            rollup: Rollup::default(),
            day: day_of(timestamp),
        };
        let one = DailyDelta {
            runs: 1,
            ..DailyDelta::default()
        };
        self.daily_add(&state.day, "running", one);
        self.runs.insert(run_id.to_string(), (state, false));
        self.remember(|_| Some(Undo::Forget(run_id.to_string())));
        Ok(("running".into(), Rollup::default()))
    }

    /// Replaces a stored call's cost (re-pricing): the row, its run's rollup and the histogram
    /// change together. Returns whether anything changed.
    pub(crate) fn reprice_llm(
        &mut self,
        call: &LlmCall,
        old: CallCost,
        new: CallCost,
    ) -> Result<bool> {
        if old == new {
            return Ok(false);
        }
        self.conn.prepare_cached(UPDATE_COST)?.execute(params![
            call.call_id,
            new.usd(),
            new.picousd(),
            new.source()
        ])?;
        let (before, after) = (Rollup::of_llm(call, &old), Rollup::of_llm(call, &new));
        let delta = Rollup {
            unpriced_calls: after.unpriced_calls - before.unpriced_calls,
            unpriced_tokens: after.unpriced_tokens - before.unpriced_tokens,
            cost_picousd: after.cost_picousd - before.cost_picousd,
            ..Rollup::default()
        };
        let Some((state, _)) = self.run_state(&call.run_id)? else {
            return Err(Error::UnknownRun {
                run_id: call.run_id.clone(),
            });
        };
        let rollup = state.rollup.add(&delta, &call.run_id)?;
        self.set_rollup(&call.run_id, rollup);
        self.histogram_add(
            "llm",
            &call.model,
            call.latency_ms,
            HistogramDelta {
                unpriced_calls: delta.unpriced_calls,
                cost_picousd: delta.cost_picousd as i128,
                ..HistogramDelta::default()
            },
        );
        Ok(true)
    }

    /// Records a run's new rollup (written at `finish`).
    fn set_rollup(&mut self, run_id: &str, rollup: Rollup) {
        self.remember_run(run_id);
        let Some((state, dirty)) = self.runs.get_mut(run_id) else {
            return;
        };
        let delta = DailyDelta {
            runs: 0,
            rollup: rollup
                .add(&state.rollup.negated(), run_id)
                .unwrap_or_default(),
        };
        state.rollup = rollup;
        *dirty = true;
        let (day, status) = (state.day.clone(), state.status.clone());
        self.daily_add(&day, &status, delta);
    }

    /// Moves a run to another start time and metadata (import completing a run that an earlier
    /// record started implicitly); its totals follow it to its new day.
    pub(crate) fn restart_run(
        &mut self,
        run_id: &str,
        metadata: &str,
        started_at: f64,
    ) -> Result<()> {
        // Load the run (and its current day) before its row changes.
        if self.run_state(run_id)?.is_none() {
            return Err(Error::UnknownRun {
                run_id: run_id.to_string(),
            });
        }
        self.conn
            .prepare_cached(RESTART_RUN)?
            .execute(params![run_id, metadata, started_at])?;
        let new_day = day_of(started_at);
        self.remember_run(run_id);
        let Some((state, _)) = self.runs.get_mut(run_id) else {
            return Ok(());
        };
        if state.day == new_day {
            return Ok(());
        }
        let moved = DailyDelta {
            runs: 1,
            rollup: state.rollup,
        };
        let (old_day, status) = (
            std::mem::replace(&mut state.day, new_day.clone()),
            state.status.clone(),
        );
        self.daily_add(&old_day, &status, moved.negated());
        self.daily_add(&new_day, &status, moved);
        Ok(())
    }

    /// Stores a validated, priced LLM call.
    pub(crate) fn llm(
        &mut self,
        call: &LlmCall,
        timestamp: f64,
        cost: CallCost,
    ) -> Result<Written> {
        let (status, rollup) = self.run_for_record(&call.run_id, timestamp)?;
        if status != "running" && !self.restoring {
            return retry_of_ended_run(
                existing_llm(self.conn, &call.call_id)?,
                &status,
                call,
                |e| compare_llm(e, call, &cost),
            );
        }
        // Everything that can refuse the call does so before its row is written, so that a
        // refused call leaves nothing behind even without a savepoint.
        let delta = Rollup::of_llm(call, &cost);
        let rollup = match rollup.add(&delta, &call.run_id) {
            Ok(rollup) => rollup,
            Err(e) => {
                return existing_llm(self.conn, &call.call_id)?
                    .map(|old| compare_llm(&old, call, &cost).map(|()| Written::Duplicate))
                    .unwrap_or(Err(e))
            }
        };
        let inserted = self.conn.prepare_cached(INSERT_LLM)?.execute(params![
            call.call_id,
            call.run_id,
            call.step,
            call.model,
            call.input_tokens,
            call.output_tokens,
            call.cached_input_tokens,
            call.cache_write_tokens,
            call.reasoning_tokens,
            call.latency_ms,
            cost.usd(),
            cost.picousd(),
            cost.source(),
            timestamp,
            call.cached,
            call.error,
            metadata_text(&call.metadata),
        ])?;
        if inserted == 0 {
            let existing = existing_llm(self.conn, &call.call_id)?;
            return existing
                .map(|e| compare_llm(&e, call, &cost).map(|()| Written::Duplicate))
                .unwrap_or(Ok(Written::Duplicate));
        }
        self.set_rollup(&call.run_id, rollup);
        self.histogram_add(
            "llm",
            &call.model,
            call.latency_ms,
            HistogramDelta {
                calls: 1,
                errors: i64::from(call.error.is_some()),
                cached_calls: delta.cached_calls,
                unpriced_calls: delta.unpriced_calls,
                input_tokens: call.input_tokens as i128,
                output_tokens: call.output_tokens as i128,
                cost_picousd: delta.cost_picousd as i128,
            },
        );
        // Alert rules are evaluated here, in the transaction of the insert, from the new rollup.
        self.evaluate(&call.run_id, &call.call_id, &rollup, Some(call.latency_ms))?;
        Ok(Written::Inserted)
    }

    /// Stores a validated tool call.
    pub(crate) fn tool(&mut self, call: &ToolCall, timestamp: f64) -> Result<Written> {
        let (status, rollup) = self.run_for_record(&call.run_id, timestamp)?;
        if status != "running" && !self.restoring {
            return retry_of_ended_run(
                existing_tool(self.conn, &call.call_id)?,
                &status,
                call,
                |e| compare_tool(e, call),
            );
        }
        let failed = i64::from(!call.success);
        let delta = Rollup {
            tool_calls: 1,
            tool_errors: failed,
            ..Rollup::default()
        };
        let rollup = match rollup.add(&delta, &call.run_id) {
            Ok(rollup) => rollup,
            Err(e) => {
                return existing_tool(self.conn, &call.call_id)?
                    .map(|old| compare_tool(&old, call).map(|()| Written::Duplicate))
                    .unwrap_or(Err(e))
            }
        };
        let inserted = self.conn.prepare_cached(INSERT_TOOL)?.execute(params![
            call.call_id,
            call.run_id,
            call.step,
            call.tool_name,
            call.latency_ms,
            call.success,
            call.error,
            timestamp,
            metadata_text(&call.metadata),
        ])?;
        if inserted == 0 {
            let existing = existing_tool(self.conn, &call.call_id)?;
            return existing
                .map(|e| compare_tool(&e, call).map(|()| Written::Duplicate))
                .unwrap_or(Ok(Written::Duplicate));
        }
        self.set_rollup(&call.run_id, rollup);
        self.histogram_add(
            "tool",
            &call.tool_name,
            call.latency_ms,
            HistogramDelta {
                calls: 1,
                errors: failed,
                ..HistogramDelta::default()
            },
        );
        self.evaluate(&call.run_id, &call.call_id, &rollup, None)?;
        Ok(Written::Inserted)
    }

    fn evaluate(
        &mut self,
        run_id: &str,
        call_id: &str,
        rollup: &Rollup,
        llm_latency_ms: Option<f64>,
    ) -> Result<()> {
        let totals = rollup.totals();
        for rule in &self.rules {
            let Some(value) = alerts::breach(rule, &totals, llm_latency_ms) else {
                continue;
            };
            let metric = rule.metric.as_str();
            let fired = self.conn.prepare_cached(INSERT_ALERT)?.execute(params![
                run_id,
                metric,
                value,
                rule.threshold,
                call_id,
                self.now
            ])?;
            if fired == 1 {
                self.fired.push(Alert {
                    run_id: run_id.to_string(),
                    metric: metric.to_string(),
                    value,
                    threshold: rule.threshold,
                    call_id: call_id.to_string(),
                    fired_at: self.now,
                });
            }
        }
        Ok(())
    }
}

/// A record for an ended run is accepted only as a retry of one already stored.
fn retry_of_ended_run<T>(
    existing: Option<T>,
    status: &str,
    call: &impl CallIds,
    compare: impl FnOnce(&T) -> Result<()>,
) -> Result<Written> {
    match existing {
        Some(e) => compare(&e).map(|()| Written::Duplicate),
        None => Err(Error::RunEnded {
            run_id: call.run_id().to_string(),
            status: status.to_string(),
        }),
    }
}

/// The ids every record has.
pub(crate) trait CallIds {
    fn run_id(&self) -> &str;
}

impl CallIds for LlmCall {
    fn run_id(&self) -> &str {
        &self.run_id
    }
}

impl CallIds for ToolCall {
    fn run_id(&self) -> &str {
        &self.run_id
    }
}

pub(crate) fn existing_llm(conn: &Connection, call_id: &str) -> Result<Option<rows::StoredLlm>> {
    let sql = format!(
        "SELECT {} FROM llm_calls WHERE call_id = ?1",
        rows::LLM_COLUMNS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([call_id], rows::llm_call)
        .optional()?)
}

pub(crate) fn existing_tool(conn: &Connection, call_id: &str) -> Result<Option<ToolCall>> {
    let sql = format!(
        "SELECT {} FROM tool_calls WHERE call_id = ?1",
        rows::TOOL_COLUMNS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([call_id], rows::tool_call)
        .optional()?)
}

fn conflict(kind: &'static str, call_id: &str, field: &'static str) -> Error {
    Error::ConflictingDuplicate {
        kind,
        call_id: call_id.to_string(),
        field,
    }
}

/// Whether `new` is a retry of the stored call: every field it gives equals the stored one. A
/// timestamp left to "now" matches any stored time; a cost left to the table matches any cost the
/// table gave (it may have been re-priced since).
fn compare_llm(stored: &rows::StoredLlm, new: &LlmCall, cost: &CallCost) -> Result<()> {
    let (old, source) = (&stored.call, &stored.cost_source);
    let same_cost = match cost {
        CallCost::Given { usd, .. } => source == "given" && old.cost_usd == Some(*usd),
        _ => source != "given",
    };
    let diffs: [(&'static str, bool); 14] = [
        ("run_id", old.run_id == new.run_id),
        ("step", old.step == new.step),
        ("model", old.model == new.model),
        ("input_tokens", old.input_tokens == new.input_tokens),
        ("output_tokens", old.output_tokens == new.output_tokens),
        (
            "cached_input_tokens",
            old.cached_input_tokens == new.cached_input_tokens,
        ),
        (
            "cache_write_tokens",
            old.cache_write_tokens == new.cache_write_tokens,
        ),
        (
            "reasoning_tokens",
            old.reasoning_tokens == new.reasoning_tokens,
        ),
        ("latency_ms", old.latency_ms == new.latency_ms),
        ("cost_usd", same_cost),
        (
            "timestamp",
            new.timestamp.is_none() || old.timestamp == new.timestamp,
        ),
        ("cached", old.cached == new.cached),
        ("error", old.error == new.error),
        ("metadata", old.metadata == new.metadata),
    ];
    match diffs.iter().find(|(_, same)| !same) {
        Some((field, _)) => Err(conflict("llm_call", &new.call_id, field)),
        None => Ok(()),
    }
}

fn compare_tool(old: &ToolCall, new: &ToolCall) -> Result<()> {
    let diffs: [(&'static str, bool); 8] = [
        ("run_id", old.run_id == new.run_id),
        ("step", old.step == new.step),
        ("tool_name", old.tool_name == new.tool_name),
        ("latency_ms", old.latency_ms == new.latency_ms),
        ("success", old.success == new.success),
        ("error", old.error == new.error),
        (
            "timestamp",
            new.timestamp.is_none() || old.timestamp == new.timestamp,
        ),
        ("metadata", old.metadata == new.metadata),
    ];
    match diffs.iter().find(|(_, same)| !same) {
        Some((field, _)) => Err(conflict("tool_call", &new.call_id, field)),
        None => Ok(()),
    }
}
