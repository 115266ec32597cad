//! Re-pricing: recompute stored costs from the current pricing table, when a model's price
//! becomes known or changes.
//!
//! Calls are visited in `rowid` order, 5,000 per query, for up to a second (by default) per
//! write transaction; each transaction updates the calls, their runs' rollups and the histogram
//! together, so a dashboard read at any moment sees every run's rollup agree with its calls, and
//! between two transactions it pauses so that live writers sharing the file get the lock. Alerts
//! are not re-evaluated: an alert is a record of what was known when the money was spent. Running
//! it twice changes nothing the
//! second time, since a cost equal to the stored one is left alone.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::Result;
use crate::record::LlmCall;
use crate::store::write::{price_call, CallCost, Writer};
use crate::Pipeline;

/// Which calls to re-price, and how long each transaction may hold the write lock.
#[derive(Debug, Clone, PartialEq)]
pub struct RepriceScope {
    /// Every call in the time range (default: only unpriced calls).
    pub all: bool,
    /// Also replace costs the caller gave explicitly (`cost_source = 'given'`).
    pub include_given: bool,
    /// Calls at or after this time (epoch seconds).
    pub since: Option<f64>,
    /// Calls before this time (epoch seconds).
    pub until: Option<f64>,
    /// How long one transaction may hold the write lock, in milliseconds (default 1,000; at
    /// least one page of 5,000 calls). Between two, re-pricing pauses (twice the transaction's
    /// time plus 5 ms, at most 100 ms) so that other writers sharing the file get in.
    pub batch_max_ms: u64,
}

impl Default for RepriceScope {
    fn default() -> Self {
        RepriceScope {
            all: false,
            include_given: false,
            since: None,
            until: None,
            batch_max_ms: 1_000,
        }
    }
}

/// What a re-pricing did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepriceReport {
    /// Calls in scope.
    pub examined: u64,
    /// Calls whose cost (or pricing state) changed.
    pub changed: u64,
    /// Calls in scope still without a price after re-pricing.
    pub still_unpriced: u64,
    /// Exact total cost of the calls in scope before, pico-dollars.
    pub before_picousd: i128,
    /// The same after.
    pub after_picousd: i128,
}

/// Calls read per query.
const PAGE: i64 = 5_000;

const SELECT_PAGE: &str = "SELECT rowid, call_id, run_id, model, input_tokens, output_tokens,
    cached_input_tokens, cache_write_tokens, reasoning_tokens, latency_ms, cost_usd, cost_picousd,
    cost_source, timestamp, cached
    FROM llm_calls
    WHERE rowid > ?1 AND (?2 OR cost_source = 'unpriced') AND (?3 OR cost_source <> 'given')
      AND timestamp >= ?4 AND timestamp < ?5
    ORDER BY rowid LIMIT ?6";

impl Pipeline {
    /// Recomputes stored LLM call costs from this pipeline's pricing table: by default only the
    /// unpriced calls, with `all` every call in the time range (keeping given costs unless
    /// `include_given`). Rollups follow in the same transactions. Returns what changed.
    ///
    /// # Errors
    /// Storage failures ([`crate::Error::Busy`], [`crate::Error::DiskFull`], ...); the batches
    /// committed before the failure stay, and running it again finishes the job.
    pub fn reprice(&self, scope: &RepriceScope) -> Result<RepriceReport> {
        let mut report = RepriceReport::default();
        let mut last_rowid = 0i64;
        loop {
            let started = Instant::now();
            let done = self.write(|tx| {
                let mut writer = Writer::new(tx, false)?;
                let done = loop {
                    let calls =
                        self.reprice_page(tx, &mut writer, scope, &mut last_rowid, &mut report)?;
                    if calls < PAGE {
                        break true;
                    }
                    if started.elapsed() >= Duration::from_millis(scope.batch_max_ms) {
                        break false;
                    }
                };
                writer.finish()?;
                Ok(done)
            })?;
            if done {
                return Ok(report);
            }
            crate::store::yield_to_writers(started.elapsed());
        }
    }

    /// Re-prices the next [`PAGE`] calls in scope after `last_rowid` (moved past them); returns
    /// how many there were.
    fn reprice_page(
        &self,
        tx: &Connection,
        writer: &mut Writer,
        scope: &RepriceScope,
        last_rowid: &mut i64,
        report: &mut RepriceReport,
    ) -> Result<i64> {
        let mut stmt = tx.prepare_cached(SELECT_PAGE)?;
        let mut rows = stmt.query(params![
            *last_rowid,
            scope.all,
            scope.include_given,
            scope.since.unwrap_or(f64::NEG_INFINITY),
            scope.until.unwrap_or(f64::INFINITY),
            PAGE
        ])?;
        let mut page = Vec::new();
        while let Some(r) = rows.next()? {
            *last_rowid = r.get(0)?;
            let call = LlmCall {
                call_id: r.get(1)?,
                run_id: r.get(2)?,
                model: r.get(3)?,
                input_tokens: r.get(4)?,
                output_tokens: r.get(5)?,
                cached_input_tokens: r.get(6)?,
                cache_write_tokens: r.get(7)?,
                reasoning_tokens: r.get(8)?,
                latency_ms: r.get(9)?,
                cost_usd: None,
                timestamp: Some(r.get(13)?),
                cached: r.get(14)?,
                ..LlmCall::default()
            };
            let old = match (r.get::<_, String>(12)?.as_str(), r.get(10)?, r.get(11)?) {
                ("given", Some(usd), Some(picousd)) => CallCost::Given { usd, picousd },
                ("computed", _, Some(picousd)) => CallCost::Computed { picousd },
                _ => CallCost::Unpriced,
            };
            page.push((call, old));
        }
        drop(rows);
        drop(stmt);
        for (call, old) in &page {
            let ts = call.timestamp.unwrap_or_default();
            let new = price_call(self.pricing(), false, call, ts)?;
            report.examined += 1;
            report.before_picousd += old.picousd().unwrap_or(0) as i128;
            report.after_picousd += new.picousd().unwrap_or(0) as i128;
            report.still_unpriced += u64::from(new == CallCost::Unpriced);
            if writer.reprice_llm(call, *old, new)? {
                report.changed += 1;
            }
        }
        Ok(page.len() as i64)
    }
}
