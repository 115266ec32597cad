//! An embedded observability and cost ledger for AI agents: exact costs, alerts that fire inside
//! the write, and a fast cross-run dashboard, in one SQLite file.
//!
//! # Architecture
//!
//! An agent's *run* makes LLM calls and tool calls. A record travels through the crate like this:
//!
//! 1. [`LlmCall`] / [`ToolCall`] (module `record`) are validated: every invalid value is a typed
//!    [`Error`] naming the field, before anything touches the database.
//! 2. An LLM call is priced by [`Pricing`] (module `pricing`) as an exact integer of pico-dollars
//!    (1e-12 USD); an unknown model leaves the call *unpriced* (never a made-up 0).
//! 3. [`Pipeline`] (module `store`) opens one `BEGIN IMMEDIATE` transaction that inserts the
//!    record, updates the run's rollup row and the latency histogram, and evaluates the alert
//!    rules (module `alerts`) against the new rollup. It commits all of that or nothing, then
//!    returns the fired [`Alert`]s.
//! 4. Reads run on pooled reader connections, one consistent snapshot each: [`RunSummary`],
//!    alerts, and the [`Dashboard`] (module `dashboard`), whose totals come from the rollups and
//!    the write-maintained `daily_totals`, and whose exact percentiles read one latency bucket
//!    through an index (module `percentile` holds the interpolation rule).
//! 5. Records leave and come back as JSONL (module `jsonl`, streaming both ways); stored costs
//!    follow a new price table with [`Pipeline::reprice`] (module `reprice`); module `simulate`
//!    generates realistic runs for the demo, the benches and the tests.
//!
//! The database file is meant to be read by people too: see README.md for the schema and ready
//! `sqlite3` queries.
//!
//! # Example
//!
//! ```
//! use agentobs::{LlmCall, Pipeline, Pricing};
//!
//! let pricing = Pricing::from_json_str(r#"{"gpt-4o": {"input": 5.0, "output": 15.0}}"#)?;
//! let pipeline = Pipeline::open_in_memory(pricing)?;
//! pipeline.set_alert("cost_usd", 1.0)?;
//!
//! let fired = pipeline.record_llm_call(LlmCall {
//!     call_id: "c1".into(),
//!     run_id: "run-1".into(),
//!     model: "gpt-4o".into(),
//!     input_tokens: 200_000,
//!     output_tokens: 10_000,
//!     latency_ms: 2_300.0,
//!     ..Default::default()
//! })?;
//! assert_eq!(fired[0].metric, "cost_usd"); // 1.15 USD > 1.0 USD
//!
//! let summary = pipeline.end_run("run-1", "success")?;
//! assert_eq!(summary.cost_usd, 1.15);
//! # Ok::<(), agentobs::Error>(())
//! ```
#![warn(missing_docs)]

mod alerts;
mod dashboard;
mod error;
mod jsonl;
mod percentile;
mod pricing;
mod record;
mod reprice;
pub mod simulate;
mod store;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use alerts::{AlertRule, Metric, RunTotals};
pub use dashboard::{
    Dashboard, DashboardFilter, DayStats, LatencyBin, ModelStats, Percentiles, ToolStats,
};
pub use error::{Error, Result};
pub use jsonl::{ImportOptions, ImportReport};
pub use percentile::percentile;
pub use pricing::{
    format_picousd, picousd_to_usd, usd_to_picousd, Cost, LoadReport, Pricing, Usage,
    BUILTIN_AS_OF, BUILTIN_SOURCE, PICO_PER_USD,
};
pub use record::{parse_time, Alert, LlmCall, Record, RunSummary, ToolCall, MAX_METADATA_DEPTH};
pub use reprice::{RepriceReport, RepriceScope};
pub use store::{
    AlertCallback, AlertFilter, BatchOutcome, Pipeline, PipelineOptions, Synchronous,
    SCHEMA_VERSION,
};
