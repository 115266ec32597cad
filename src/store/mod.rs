//! [`Pipeline`]: the handle on one database file, and its recording API.
//!
//! One writer connection behind a mutex serializes this process's writes (SQLite allows one
//! writer per file anyway; `BEGIN IMMEDIATE` plus the busy timeout serializes processes). Reads
//! (dashboard, export, run lookups) take a pooled connection of their own, so a long report never
//! waits behind writes and sees one consistent WAL snapshot per read transaction.

pub(crate) mod migrate;
pub(crate) mod rows;
pub(crate) mod write;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::alerts::{AlertRule, Metric};
use crate::error::{Error, Result};
use crate::pricing::Pricing;
use crate::record::{self, Alert, LlmCall, Record, RunSummary, ToolCall};

use migrate::ConnConfig;
pub use migrate::{Synchronous, SCHEMA_VERSION};
use write::{Prepared, Writer, Written};

/// A callback run for every alert fired, after its transaction committed.
pub type AlertCallback = Box<dyn Fn(&Alert) + Send + Sync>;

/// How to open a [`Pipeline`]: durability, busy timeout, strict pricing, an alert callback.
///
/// ```
/// use std::time::Duration;
/// use agentobs::{Pipeline, Pricing, Synchronous};
/// let pipeline = Pipeline::options()
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .strict_pricing(true)
///     .open_in_memory(Pricing::builtin())?;
/// # Ok::<(), agentobs::Error>(())
/// ```
pub struct PipelineOptions {
    config: ConnConfig,
    strict_pricing: bool,
    on_alert: Option<AlertCallback>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            config: ConnConfig {
                synchronous: Synchronous::Normal,
                busy_timeout: Duration::from_secs(5),
                cache_size_kib: 48 * 1024,
                read_only: false,
                max_size_bytes: None,
            },
            strict_pricing: false,
            on_alert: None,
        }
    }
}

impl PipelineOptions {
    /// Durability of commits (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, s: Synchronous) -> Self {
        self.config.synchronous = s;
        self
    }

    /// How long a write waits for another writer's lock before failing with [`Error::Busy`]
    /// (default 5 s).
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.config.busy_timeout = d;
        self
    }

    /// SQLite page cache per connection in KiB (default 48 MiB).
    pub fn cache_size_kib(mut self, kib: i64) -> Self {
        self.config.cache_size_kib = kib;
        self
    }

    /// Open the file read-only: reads (dashboard, export, runs) work, every write fails with
    /// [`Error::ReadOnly`], and the file is never modified. A file the process may not write is
    /// opened read-only without this option too.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// Caps the database file's size: a write that would grow it past `bytes` fails with
    /// [`Error::DiskFull`] and is rolled back, exactly as on a full disk (a quota for shared
    /// machines, and how the tests prove disk-full handling).
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.config.max_size_bytes = Some(bytes);
        self
    }

    /// Reject LLM calls whose model the pricing table does not know ([`Error::UnknownModel`],
    /// nothing written) instead of storing them unpriced (default: store unpriced).
    pub fn strict_pricing(mut self, strict: bool) -> Self {
        self.strict_pricing = strict;
        self
    }

    /// A callback for every fired alert, run after the write committed and before the record
    /// call returns. A panic in it is caught; it holds no lock, so a slow callback delays only
    /// its own caller.
    pub fn on_alert(mut self, f: impl Fn(&Alert) + Send + Sync + 'static) -> Self {
        self.on_alert = Some(Box::new(f));
        self
    }

    /// Opens or creates the database file at `path` (see [`Pipeline::open`]).
    ///
    /// # Errors
    /// As [`Pipeline::open`].
    pub fn open(self, path: impl AsRef<Path>, pricing: Pricing) -> Result<Pipeline> {
        let path = path.as_ref();
        let (conn, read_only) = migrate::open_file(path, &self.config)?;
        Ok(self.build(conn, Some(path.to_path_buf()), read_only, pricing))
    }

    /// Opens a private in-memory database (for tests and experiments).
    ///
    /// # Errors
    /// [`Error::Sqlite`] if SQLite cannot allocate it.
    pub fn open_in_memory(self, pricing: Pricing) -> Result<Pipeline> {
        let conn = migrate::open_memory(&self.config)?;
        Ok(self.build(conn, None, false, pricing))
    }

    fn build(
        self,
        conn: Connection,
        path: Option<PathBuf>,
        read_only: bool,
        pricing: Pricing,
    ) -> Pipeline {
        Pipeline {
            path,
            read_only,
            config: self.config,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            pricing,
            strict_pricing: self.strict_pricing,
            on_alert: self.on_alert,
        }
    }
}

/// What [`Pipeline::record_batch`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Calls stored.
    pub recorded: usize,
    /// Runs started.
    pub runs_started: usize,
    /// Runs ended.
    pub runs_ended: usize,
    /// Records already stored with the same content (retries), skipped.
    pub duplicates: usize,
    /// Alerts the batch fired.
    pub alerts: Vec<Alert>,
}

/// The handle on one agentobs database: records calls, fires alerts, serves reads.
///
/// `Pipeline` is `Send + Sync`: share one between threads (for example in an `Arc`). Many
/// processes may open the same file.
///
/// ```
/// use agentobs::{LlmCall, Pipeline, Pricing, ToolCall};
/// let dir = tempfile::tempdir()?;
/// let pricing = Pricing::from_json_str(r#"{"gpt-4o": {"input": 2.5, "output": 10.0}}"#)?;
/// let pipeline = Pipeline::open(dir.path().join("agentobs.db"), pricing)?;
///
/// pipeline.start_run("run-1", serde_json::json!({"agent": "support"}))?;
/// pipeline.record_llm_call(LlmCall {
///     call_id: "c1".into(), run_id: "run-1".into(), model: "gpt-4o".into(),
///     input_tokens: 1_000, output_tokens: 500, latency_ms: 900.0, ..Default::default()
/// })?;
/// pipeline.record_tool_call(ToolCall {
///     call_id: "t1".into(), run_id: "run-1".into(), step: 1, tool_name: "search".into(),
///     latency_ms: 120.0, success: false, error: Some("timeout".into()), ..Default::default()
/// })?;
/// let summary = pipeline.end_run("run-1", "success")?;
/// assert_eq!(summary.cost_usd, 0.0075);
/// assert_eq!(summary.error_rate, Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pipeline {
    path: Option<PathBuf>,
    read_only: bool,
    config: ConnConfig,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    pricing: Pricing,
    strict_pricing: bool,
    on_alert: Option<AlertCallback>,
}

/// Pauses a long job (an import, a re-pricing) between two of its write transactions, after one
/// that held the write lock for `held`, so that other writers sharing the file get in.
///
/// SQLite has no queue for the write lock: a writer waiting on its busy timeout sleeps between
/// tries (SQLite's busy handler: 1, 2, 5, 10, 15, 20, 25, … ms, at most 100 ms) and would wake to
/// find the job's next transaction holding the lock again, until it times out. Each of its sleeps
/// is at most twice the time it had waited, plus 5 ms, and at most 100 ms; a writer that began
/// waiting during this transaction has waited at most `held`, so it tries again within the pause
/// and gets in.
pub(crate) fn yield_to_writers(held: Duration) {
    std::thread::sleep((held * 2 + Duration::from_millis(5)).min(Duration::from_millis(100)));
}

/// Locks a mutex even if a thread panicked while holding it: the connection inside stays
/// valid (an open transaction was rolled back when its guard dropped).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipeline {
    /// Opens or creates the database file at `path` with default options, and migrates it.
    ///
    /// # Errors
    /// [`Error::NotADatabase`] for a file that is not an SQLite database (or is damaged),
    /// [`Error::NotOurs`] for another program's database, [`Error::SchemaTooNew`] for a file of a
    /// newer agentobs — all three leave the file untouched; [`Error::Migration`] if a migration
    /// fails (the file stays at its old version); [`Error::Busy`] if another process holds the
    /// write lock longer than the busy timeout.
    pub fn open(path: impl AsRef<Path>, pricing: Pricing) -> Result<Pipeline> {
        PipelineOptions::default().open(path, pricing)
    }

    /// A private in-memory database with default options.
    ///
    /// # Errors
    /// [`Error::Sqlite`] if SQLite cannot allocate it.
    pub fn open_in_memory(pricing: Pricing) -> Result<Pipeline> {
        PipelineOptions::default().open_in_memory(pricing)
    }

    /// Options for opening a pipeline.
    pub fn options() -> PipelineOptions {
        PipelineOptions::default()
    }

    /// The pricing table in use.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// Whether unknown models are rejected rather than stored unpriced.
    pub fn strict_pricing(&self) -> bool {
        self.strict_pricing
    }

    /// Whether the database was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer connection; commits when
    /// `f` succeeds, rolls back (nothing written) when it fails.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.read_only {
            return Err(Error::ReadOnly(format!(
                "{} was opened read-only",
                self.path.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` inside one read transaction (one consistent snapshot) on a pooled reader.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(path) = &self.path else {
            let conn = lock(&self.writer);
            return in_read_tx(&conn, f);
        };
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => migrate::open_reader(path, &self.config, self.read_only)?,
        };
        let out = in_read_tx(&conn, f);
        lock(&self.readers).push(conn);
        out
    }

    fn notify(&self, alerts: &[Alert]) {
        if let Some(cb) = &self.on_alert {
            for alert in alerts {
                // The write has committed; a panicking callback must not unwind into the caller's
                // bookkeeping or lose the other alerts.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(alert)));
            }
        }
    }

    /// Starts a run at the current time. `metadata` must be a JSON object.
    ///
    /// # Errors
    /// [`Error::RunExists`] if the run exists (also when a record started it implicitly);
    /// [`Error::InvalidValue`] for an empty id or non-object metadata.
    pub fn start_run(&self, run_id: &str, metadata: Value) -> Result<()> {
        self.start_run_at(run_id, metadata, record::now())
    }

    /// Starts a run at `started_at` (epoch seconds), for replaying or simulating history.
    ///
    /// # Errors
    /// As [`Pipeline::start_run`], and [`Error::InvalidValue`] for a non-finite time.
    pub fn start_run_at(&self, run_id: &str, metadata: Value, started_at: f64) -> Result<()> {
        self.record_batch([Record::StartRun {
            run_id: run_id.to_string(),
            metadata,
            started_at: Some(started_at),
        }])
        .map(|_| ())
    }

    /// Records one LLM call in its own transaction and returns the alerts it fired.
    ///
    /// A call with `cost_usd: None` is priced from the table at its timestamp; an unknown model
    /// is stored unpriced (or rejected with strict pricing). The same `call_id` with the same
    /// content again is a no-op returning no alerts.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the field and value; [`Error::RunEnded`];
    /// [`Error::ConflictingDuplicate`]; [`Error::UnknownModel`] with strict pricing;
    /// [`Error::Busy`] when the write lock was not had within the busy timeout. On any error
    /// nothing was written.
    pub fn record_llm_call(&self, call: LlmCall) -> Result<Vec<Alert>> {
        Ok(self.record_batch([Record::Llm(call)])?.alerts)
    }

    /// Records one tool call in its own transaction and returns the alerts it fired.
    ///
    /// # Errors
    /// As [`Pipeline::record_llm_call`] (without pricing errors).
    pub fn record_tool_call(&self, call: ToolCall) -> Result<Vec<Alert>> {
        Ok(self.record_batch([Record::Tool(call)])?.alerts)
    }

    /// Records many calls (and run starts and ends) in one transaction: all of them or, on any
    /// error, none.
    ///
    /// # Errors
    /// As [`Pipeline::record_llm_call`], for the first record that fails; nothing was written.
    pub fn record_batch(&self, records: impl IntoIterator<Item = Record>) -> Result<BatchOutcome> {
        let now = record::now();
        // Validate and price everything before taking the write lock.
        let prepared = records
            .into_iter()
            .map(|r| write::prepare(&self.pricing, self.strict_pricing, r, now))
            .collect::<Result<Vec<_>>>()?;
        let outcome = self.write(|tx| {
            let mut writer = Writer::new(tx, true)?;
            let mut outcome = BatchOutcome::default();
            for p in &prepared {
                let written = writer.apply(p)?;
                match (p, written) {
                    (Prepared::Start { .. }, _) => outcome.runs_started += 1,
                    (Prepared::End { .. }, _) => outcome.runs_ended += 1,
                    (_, Written::Inserted) => outcome.recorded += 1,
                    (_, Written::Duplicate) => outcome.duplicates += 1,
                }
            }
            outcome.alerts = writer.finish()?;
            Ok(outcome)
        })?;
        self.notify(&outcome.alerts);
        Ok(outcome)
    }

    /// Ends a run now with `status` (any non-empty text but `running`, e.g. `success`,
    /// `failed`) and returns its summary.
    ///
    /// # Errors
    /// [`Error::UnknownRun`]; [`Error::RunEnded`] if it already ended; [`Error::InvalidValue`]
    /// for an empty status or `running`.
    pub fn end_run(&self, run_id: &str, status: &str) -> Result<RunSummary> {
        self.end_run_at(run_id, status, record::now())
    }

    /// Ends a run at `ended_at` (epoch seconds); see [`Pipeline::end_run`].
    ///
    /// # Errors
    /// As [`Pipeline::end_run`], and [`Error::InvalidValue`] for a non-finite time.
    pub fn end_run_at(&self, run_id: &str, status: &str, ended_at: f64) -> Result<RunSummary> {
        let end = write::prepare(
            &self.pricing,
            self.strict_pricing,
            Record::EndRun {
                run_id: run_id.to_string(),
                status: status.to_string(),
                ended_at: Some(ended_at),
            },
            ended_at,
        )?;
        self.write(|tx| {
            let mut writer = Writer::new(tx, false)?;
            writer.apply(&end)?;
            writer.finish()?;
            run_summary_in(tx, run_id)
        })
    }

    /// A run's summary, or `None` for an unknown run.
    ///
    /// # Errors
    /// [`Error::Sqlite`] and friends on storage failures.
    pub fn run(&self, run_id: &str) -> Result<Option<RunSummary>> {
        self.read(|conn| match run_summary_in(conn, run_id) {
            Ok(s) => Ok(Some(s)),
            Err(Error::UnknownRun { .. }) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Runs, newest first, optionally only those with `status`, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn runs(&self, status: Option<&str>, limit: usize) -> Result<Vec<RunSummary>> {
        let sql = format!(
            "SELECT {} FROM runs WHERE (?1 IS NULL OR status = ?1)
             ORDER BY started_at DESC, run_id LIMIT ?2",
            rows::RUN_COLUMNS
        );
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let runs = stmt
                .query_map(params![status, limit], rows::run_summary)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(runs)
        })
    }

    /// Sets (or replaces) the rule for `metric`: fire when a run's value goes strictly above
    /// `threshold`. The rule is stored in the file, so every process sharing it applies it.
    ///
    /// # Errors
    /// [`Error::UnknownMetric`] listing the known ones; [`Error::InvalidValue`] for a NaN,
    /// infinite or negative threshold.
    pub fn set_alert(&self, metric: &str, threshold: f64) -> Result<AlertRule> {
        self.set_alert_with(metric, threshold, 0)
    }

    /// [`Pipeline::set_alert`] with `min_calls`: a rate rule waits until the run has that many
    /// tool calls.
    ///
    /// # Errors
    /// As [`Pipeline::set_alert`], and [`Error::InvalidValue`] for `min_calls` on a metric that
    /// is not a rate.
    pub fn set_alert_with(
        &self,
        metric: &str,
        threshold: f64,
        min_calls: i64,
    ) -> Result<AlertRule> {
        let metric: Metric = metric.parse()?;
        let rule = AlertRule::new(metric, threshold, min_calls)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO alert_rules (metric, threshold, min_calls, created_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (metric) DO UPDATE SET threshold = excluded.threshold,
                     min_calls = excluded.min_calls, created_at = excluded.created_at",
                params![metric.as_str(), threshold, min_calls, record::now()],
            )?;
            Ok(())
        })?;
        Ok(rule)
    }

    /// Removes the rule for `metric`; returns whether there was one. Alerts already fired stay.
    ///
    /// # Errors
    /// [`Error::UnknownMetric`].
    pub fn remove_alert(&self, metric: &str) -> Result<bool> {
        let metric: Metric = metric.parse()?;
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM alert_rules WHERE metric = ?1",
                [metric.as_str()],
            )?;
            Ok(n > 0)
        })
    }

    /// The rules in force, by metric name.
    ///
    /// # Errors
    /// Storage failures.
    pub fn alert_rules(&self) -> Result<Vec<AlertRule>> {
        self.read(write::load_rules)
    }

    /// Fired alerts, oldest first, that match `filter` (all alerts for the default filter).
    ///
    /// # Errors
    /// [`Error::UnknownMetric`] for a metric filter agentobs does not know; storage failures.
    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>> {
        if let Some(m) = &filter.metric {
            m.parse::<Metric>()?;
        }
        let sql = format!(
            "SELECT {} FROM alerts
             WHERE (?1 IS NULL OR run_id = ?1) AND (?2 IS NULL OR metric = ?2)
               AND fired_at >= ?3 AND fired_at < ?4
             ORDER BY fired_at, alert_id",
            rows::ALERT_COLUMNS
        );
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let alerts = stmt
                .query_map(
                    params![
                        filter.run_id,
                        filter.metric,
                        filter.since.unwrap_or(f64::NEG_INFINITY),
                        filter.until.unwrap_or(f64::INFINITY)
                    ],
                    rows::alert,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(alerts)
        })
    }
}

/// Which alerts [`Pipeline::alerts`] lists; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Only this run's alerts.
    pub run_id: Option<String>,
    /// Only alerts of this metric (`cost_usd`, `error_rate`, ...).
    pub metric: Option<String>,
    /// Fired at or after this time (epoch seconds).
    pub since: Option<f64>,
    /// Fired before this time (epoch seconds).
    pub until: Option<f64>,
}

impl AlertFilter {
    /// The alerts of one run.
    pub fn run(run_id: &str) -> AlertFilter {
        AlertFilter {
            run_id: Some(run_id.to_string()),
            ..AlertFilter::default()
        }
    }
}

fn in_read_tx<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let out = f(conn);
    // A read transaction has nothing to commit; ending it releases the WAL snapshot.
    let end = conn.execute_batch("COMMIT");
    let out = out?;
    end?;
    Ok(out)
}

/// A run's summary with its alerts.
pub(crate) fn run_summary_in(conn: &Connection, run_id: &str) -> Result<RunSummary> {
    let sql = format!("SELECT {} FROM runs WHERE run_id = ?1", rows::RUN_COLUMNS);
    let summary = conn
        .prepare_cached(&sql)?
        .query_row([run_id], rows::run_summary)
        .optional()?;
    let mut summary = summary.ok_or_else(|| Error::UnknownRun {
        run_id: run_id.to_string(),
    })?;
    let sql = format!(
        "SELECT {} FROM alerts WHERE run_id = ?1 ORDER BY fired_at, alert_id",
        rows::ALERT_COLUMNS
    );
    summary.alerts = conn
        .prepare_cached(&sql)?
        .query_map([run_id], rows::alert)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(summary)
}
