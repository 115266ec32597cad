//! The cross-run dashboard: counts, exact costs, error and cache rates, and exact p50/p95
//! latencies, overall and per model and tool.
//!
//! Two decisions keep it fast at 100,000 runs without giving up exactness:
//! - Totals come from the rollup columns of `runs`, kept current by every write, so they cost one
//!   pass over the runs in scope and none over the ~30x larger call tables. Money and token sums
//!   are split into high and low parts in SQL (`x / 1e6`, `x % 1e6`) and recombined in `i128`, so
//!   no 64-bit `SUM` can overflow and nothing is ever added as a float.
//! - Unfiltered percentiles never walk the call tables: `latency_histogram` (kept at write time)
//!   says which latency bucket holds rank k and at which offset, and one index range pick
//!   (`WHERE latency_ms >= floor ORDER BY latency_ms LIMIT 2 OFFSET j`) reads the exact values at
//!   ranks k and k+1, interpolated as numpy and `percentile_cont` do. The same histogram holds the
//!   per-model and per-tool counts and sums. A filtered dashboard reads the calls of the runs in
//!   scope through the `(run_id, …)` indexes, so its cost grows with the scope, not the file.
//!
//! Everything is read in one read transaction: one consistent snapshot, whatever writers do.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::percentile::{self, bucket_floor, interpolate, rank};
use crate::pricing::{picousd_to_usd, scaled_to_f64};
use crate::record::Alert;
use crate::store::rows;
use crate::Pipeline;

/// Which runs a dashboard covers: started in `[since, until)`, with `status`, whose metadata has
/// every `key = value` pair of `meta` (top-level keys; values compared as text, so `3`, `true`
/// and `"3"` are matched by `3`, `true` and `3`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardFilter {
    /// Runs started at or after this time (epoch seconds).
    pub since: Option<f64>,
    /// Runs started before this time (epoch seconds).
    pub until: Option<f64>,
    /// Only runs with this status.
    pub status: Option<String>,
    /// Only runs whose metadata holds all these pairs.
    pub meta: Vec<(String, String)>,
}

impl DashboardFilter {
    /// Whether the filter selects every run.
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.status.is_none()
            && self.meta.is_empty()
    }
}

/// p50 and p95 of a set of values; `None` when the set is empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
}

/// One model's row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    /// Model name as recorded.
    pub model: String,
    /// LLM calls.
    pub calls: i64,
    /// Input tokens.
    pub input_tokens: i128,
    /// Output tokens.
    pub output_tokens: i128,
    /// Exact cost of the priced calls, USD.
    pub cost_usd: f64,
    /// The same in pico-dollars.
    pub cost_picousd: i128,
    /// Calls with no known price (not in `cost_usd`).
    pub unpriced_calls: i64,
    /// Calls answered from a response cache.
    pub cached_calls: i64,
    /// Median latency.
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency.
    pub p95_latency_ms: Option<f64>,
}

/// One tool's row of the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStats {
    /// Tool name.
    pub tool: String,
    /// Tool calls.
    pub calls: i64,
    /// Failed calls.
    pub errors: i64,
    /// `errors / calls`.
    pub error_rate: Option<f64>,
    /// Median latency.
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency.
    pub p95_latency_ms: Option<f64>,
}

/// Runs and cost of one UTC day (by run start).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayStats {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Runs started that day.
    pub runs: i64,
    /// Their exact LLM cost, USD.
    pub cost_usd: f64,
}

/// One bar of a latency histogram: `calls` values in `[lo_ms, hi_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyBin {
    /// Lower bound, inclusive.
    pub lo_ms: f64,
    /// Upper bound, exclusive.
    pub hi_ms: f64,
    /// Values in the bin.
    pub calls: i64,
}

/// The dashboard: every figure a report shows. Serialises to the JSON of SPEC section 6.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dashboard {
    /// Runs in scope.
    pub runs: i64,
    /// Runs in scope by status.
    pub runs_by_status: BTreeMap<String, i64>,
    /// LLM calls of the runs in scope.
    pub llm_calls: i64,
    /// Tool calls of the runs in scope.
    pub tool_calls: i64,
    /// LLM call latency.
    pub llm_latency_ms: Percentiles,
    /// Tool call latency.
    pub tool_latency_ms: Percentiles,
    /// Duration of the ended runs in scope.
    pub run_duration_ms: Percentiles,
    /// Total LLM cost / runs (`None` without runs).
    pub avg_cost_usd: Option<f64>,
    /// Exact total LLM cost of the priced calls, USD.
    pub total_cost_usd: f64,
    /// The same in pico-dollars, as an exact integer.
    pub total_cost_picousd: i128,
    /// LLM calls whose cost is unknown (not in the totals).
    pub unpriced_calls: i64,
    /// Input + output tokens of those calls.
    pub unpriced_tokens: i128,
    /// Input tokens of all LLM calls.
    pub input_tokens: i128,
    /// Output tokens of all LLM calls.
    pub output_tokens: i128,
    /// Failed tool calls.
    pub tool_errors: i64,
    /// Failed / all tool calls (`None` without tool calls).
    pub tool_error_rate: Option<f64>,
    /// LLM calls answered from a response cache.
    pub cached_calls: i64,
    /// Cached / all LLM calls (`None` without LLM calls).
    pub cache_hit_rate: Option<f64>,
    /// Per model, most expensive first.
    pub by_model: Vec<ModelStats>,
    /// Per tool, most called first.
    pub by_tool: Vec<ToolStats>,
    /// Alerts fired in the runs in scope.
    pub alerts: i64,
    /// The latest alerts in scope (at most 10), newest first.
    pub recent_alerts: Vec<Alert>,
    /// Runs and cost per UTC day of run start, oldest first.
    pub cost_by_day: Vec<DayStats>,
    /// Distribution of LLM call latencies (log-spaced bins).
    pub llm_latency_histogram: Vec<LatencyBin>,
}

/// The WHERE clause selecting the runs in scope: `?1` since and `?2` until (±infinity when not
/// given, so the range stays sargable and walks `runs_by_started_at`), `?3` status, `?4` a JSON
/// array of `[key, value]` pairs that must all match the run's metadata.
macro_rules! scope_where {
    () => {
        "runs.started_at >= ?1 AND runs.started_at < ?2
         AND (?3 IS NULL OR runs.status = ?3)
         AND NOT EXISTS (
             SELECT 1 FROM json_each(?4) AS f
             WHERE NOT EXISTS (
                 SELECT 1 FROM json_each(runs.metadata) AS m
                 WHERE m.key = json_extract(f.value, '$[0]')
                   AND (CASE m.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                        WHEN 'null' THEN 'null' WHEN 'text' THEN m.atom
                        ELSE CAST(m.value AS TEXT) END) = json_extract(f.value, '$[1]')))"
    };
}

/// Run-level totals from the rollups, by status and day. High/low splits keep sums exact.
macro_rules! run_totals_select {
    () => {
        "SELECT runs.status AS status, date(runs.started_at, 'unixepoch') AS day, count(*) AS runs,
        sum(runs.cost_picousd / 1000000) AS cost_hi, sum(runs.cost_picousd % 1000000) AS cost_lo,
        sum(runs.llm_calls) AS llm_calls, sum(runs.tool_calls) AS tool_calls,
        sum(runs.tool_errors) AS tool_errors, sum(runs.cached_calls) AS cached_calls,
        sum(runs.unpriced_calls) AS unpriced_calls,
        sum(runs.input_tokens / 1000000000) AS in_hi, sum(runs.input_tokens % 1000000000) AS in_lo,
        sum(runs.output_tokens / 1000000000) AS out_hi, sum(runs.output_tokens % 1000000000) AS out_lo,
        sum(runs.unpriced_tokens / 1000000000) AS unp_hi, sum(runs.unpriced_tokens % 1000000000) AS unp_lo
         FROM runs "
    };
}

/// Every run: the per-day, per-status sums of the ended runs kept by the write path (a few rows
/// per day), plus the running runs summed live through `runs_by_status`, so whole-file totals
/// cost the same at 100,000 runs as at 100.
const DAILY_TOTALS: &str = concat!(
    // UNION ALL matches columns by position: the same order as `run_totals_select!`.
    "SELECT status, day, runs, cost_microusd AS cost_hi, cost_rem_picousd AS cost_lo,
        llm_calls, tool_calls, tool_errors, cached_calls, unpriced_calls,
        input_tokens_hi AS in_hi, input_tokens_lo AS in_lo,
        output_tokens_hi AS out_hi, output_tokens_lo AS out_lo,
        unpriced_tokens_hi AS unp_hi, unpriced_tokens_lo AS unp_lo
     FROM daily_totals
     UNION ALL ",
    run_totals_select!(),
    " WHERE runs.status = 'running' GROUP BY status, day"
);

/// The runs in scope.
const RUN_TOTALS: &str = concat!(
    run_totals_select!(),
    " WHERE ",
    scope_where!(),
    " GROUP BY status, day"
);

const ALERT_COUNT_ALL: &str = "SELECT count(*) FROM alerts";

const RECENT_ALERTS_ALL: &str = "SELECT run_id, metric, value, threshold, call_id, fired_at
    FROM alerts ORDER BY fired_at DESC, alert_id DESC LIMIT 10";

const SCOPE_ALERT_COUNT: &str = concat!(
    "SELECT count(*) FROM alerts JOIN runs ON runs.run_id = alerts.run_id WHERE ",
    scope_where!()
);

const SCOPE_RECENT_ALERTS: &str = concat!(
    "SELECT alerts.run_id AS run_id, metric, value, threshold, call_id, fired_at
     FROM runs CROSS JOIN alerts ON alerts.run_id = runs.run_id WHERE ",
    scope_where!(),
    " ORDER BY fired_at DESC, alert_id DESC LIMIT 10"
);

const SCOPE_LLM_CALLS: &str = concat!(
    "SELECT c.model, c.latency_ms, c.input_tokens, c.output_tokens, c.cost_picousd, c.cached
     FROM runs CROSS JOIN llm_calls AS c ON c.run_id = runs.run_id WHERE ",
    scope_where!()
);

const SCOPE_TOOL_CALLS: &str = concat!(
    "SELECT c.tool_name, c.latency_ms, c.success
     FROM runs CROSS JOIN tool_calls AS c ON c.run_id = runs.run_id WHERE ",
    scope_where!()
);

const SCOPE_DURATIONS: &str = concat!(
    "SELECT runs.duration_ms FROM runs WHERE runs.duration_ms IS NOT NULL AND ",
    scope_where!()
);

const HISTOGRAM: &str = "SELECT series, key, bucket, calls, errors, cached_calls, unpriced_calls,
    input_tokens, output_tokens, cost_microusd, cost_rem_picousd
    FROM latency_histogram ORDER BY series, key, bucket";

/// The values of one latency range of one key, ascending, on the per-key index.
const RANGE_LLM: &str = "SELECT latency_ms FROM llm_calls
    WHERE model = ?1 AND latency_ms >= ?2 AND latency_ms < ?3 ORDER BY latency_ms";
const RANGE_TOOL: &str = "SELECT latency_ms FROM tool_calls
    WHERE tool_name = ?1 AND latency_ms >= ?2 AND latency_ms < ?3 ORDER BY latency_ms";
const RANGE_RUN: &str = "SELECT duration_ms FROM runs
    WHERE ?1 = '' AND duration_ms >= ?2 AND duration_ms < ?3 ORDER BY duration_ms";
/// The smallest and largest value of a range (two index probes), to answer a bucket whose
/// values are all equal without reading them.
const MINMAX_LLM: &str = "SELECT min(latency_ms), max(latency_ms) FROM llm_calls
    WHERE model = ?1 AND latency_ms >= ?2 AND latency_ms < ?3";
const MINMAX_TOOL: &str = "SELECT min(latency_ms), max(latency_ms) FROM tool_calls
    WHERE tool_name = ?1 AND latency_ms >= ?2 AND latency_ms < ?3";
const MINMAX_RUN: &str = "SELECT min(duration_ms), max(duration_ms) FROM runs
    WHERE ?1 = '' AND duration_ms >= ?2 AND duration_ms < ?3";

/// The queries that read one series' values by range.
struct SeriesSql {
    range: &'static str,
    minmax: &'static str,
}

const LLM_SQL: SeriesSql = SeriesSql {
    range: RANGE_LLM,
    minmax: MINMAX_LLM,
};
const TOOL_SQL: SeriesSql = SeriesSql {
    range: RANGE_TOOL,
    minmax: MINMAX_TOOL,
};
const RUN_SQL: SeriesSql = SeriesSql {
    range: RANGE_RUN,
    minmax: MINMAX_RUN,
};

/// The statements whose plans the tests pin (name, SQL).
#[cfg(test)]
const PLANNED_QUERIES: &[(&str, &str)] = &[
    ("range_llm", RANGE_LLM),
    ("range_tool", RANGE_TOOL),
    ("range_run", RANGE_RUN),
    ("minmax_llm", MINMAX_LLM),
    ("minmax_tool", MINMAX_TOOL),
    ("scope_llm_calls", SCOPE_LLM_CALLS),
    ("scope_tool_calls", SCOPE_TOOL_CALLS),
];

const P50: f64 = 0.5;
const P95: f64 = 0.95;

/// Exact sums of split integers.
#[derive(Debug, Default, Clone, Copy)]
struct Split {
    hi: i128,
    lo: i128,
}

impl Split {
    fn add(&mut self, hi: i64, lo: i64) {
        self.hi += hi as i128;
        self.lo += lo as i128;
    }
    fn value(&self, unit: i128) -> i128 {
        self.hi * unit + self.lo
    }
}

/// Per-key histogram data: buckets ascending with their counts, and the key's sums.
#[derive(Debug, Default)]
struct KeyHistogram {
    buckets: Vec<(i64, i64)>,
    calls: i64,
    errors: i64,
    cached_calls: i64,
    unpriced_calls: i64,
    input_tokens: i128,
    output_tokens: i128,
    cost: Split,
}

impl Pipeline {
    /// The dashboard over the runs the filter selects, read in one consistent snapshot.
    ///
    /// ```
    /// # use agentobs::{DashboardFilter, Pipeline, Pricing, ToolCall};
    /// let pipeline = Pipeline::open_in_memory(Pricing::builtin())?;
    /// let d = pipeline.dashboard(&DashboardFilter::default())?;
    /// assert_eq!(d.runs, 0);
    /// assert_eq!(d.llm_latency_ms.p50, None); // empty: null, never 0
    /// # Ok::<(), agentobs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for a non-finite time bound; storage failures.
    pub fn dashboard(&self, filter: &DashboardFilter) -> Result<Dashboard> {
        for (field, v) in [("since", filter.since), ("until", filter.until)] {
            if let Some(v) = v {
                crate::record::check_finite(field, v)?;
            }
        }
        let meta = serde_json::to_string(
            &filter
                .meta
                .iter()
                .map(|(k, v)| [k.as_str(), v.as_str()])
                .collect::<Vec<_>>(),
        )
        .map_err(|e| Error::invalid("meta", e, "cannot be encoded"))?;
        self.read(|conn| {
            let scope = Scope {
                since: filter.since,
                until: filter.until,
                status: filter.status.as_deref(),
                meta: &meta,
            };
            let mut d = run_totals(conn, &scope)?;
            if filter.is_empty() {
                calls_from_histogram(conn, &mut d)?;
            } else {
                calls_in_scope(conn, &scope, &mut d)?;
            }
            d.avg_cost_usd = (d.runs > 0).then(|| exact_ratio_usd(d.total_cost_picousd, d.runs));
            d.tool_error_rate = rate(d.tool_errors, d.tool_calls);
            d.cache_hit_rate = rate(d.cached_calls, d.llm_calls);
            if scope.is_everything() {
                d.alerts = conn
                    .prepare_cached(ALERT_COUNT_ALL)?
                    .query_row([], |r| r.get(0))?;
                d.recent_alerts = conn
                    .prepare_cached(RECENT_ALERTS_ALL)?
                    .query_map([], rows::alert)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            } else {
                d.alerts = conn
                    .prepare_cached(SCOPE_ALERT_COUNT)?
                    .query_row(scope.params(), |r| r.get(0))?;
                d.recent_alerts = conn
                    .prepare_cached(SCOPE_RECENT_ALERTS)?
                    .query_map(scope.params(), rows::alert)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(d)
        })
    }
}

/// `picousd / n` in USD, the nearest `f64` to the exact quotient (truncated at 1e-18 USD).
fn exact_ratio_usd(picousd: i128, n: i64) -> f64 {
    scaled_to_f64(picousd * 1_000_000 / n as i128, 18)
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

struct Scope<'a> {
    since: Option<f64>,
    until: Option<f64>,
    status: Option<&'a str>,
    meta: &'a str,
}

impl Scope<'_> {
    fn is_everything(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.status.is_none() && self.meta == "[]"
    }

    fn params(&self) -> (f64, f64, Option<&str>, &str) {
        (
            self.since.unwrap_or(f64::NEG_INFINITY),
            self.until.unwrap_or(f64::INFINITY),
            self.status,
            self.meta,
        )
    }
}

fn run_totals(conn: &Connection, scope: &Scope) -> Result<Dashboard> {
    let mut d = Dashboard::empty();
    let mut cost = Split::default();
    let (mut input, mut output, mut unpriced_tokens) =
        (Split::default(), Split::default(), Split::default());
    let mut days: BTreeMap<String, (i64, Split)> = BTreeMap::new();
    let mut stmt;
    let mut rows = if scope.is_everything() {
        stmt = conn.prepare_cached(DAILY_TOTALS)?;
        stmt.query([])?
    } else {
        stmt = conn.prepare_cached(RUN_TOTALS)?;
        stmt.query(scope.params())?
    };
    while let Some(r) = rows.next()? {
        let runs: i64 = r.get("runs")?;
        let status: String = r.get("status")?;
        let day: Option<String> = r.get("day")?;
        d.runs += runs;
        if runs != 0 {
            *d.runs_by_status.entry(status).or_insert(0) += runs;
        }
        let (hi, lo): (i64, i64) = (r.get("cost_hi")?, r.get("cost_lo")?);
        cost.add(hi, lo);
        let day = days
            .entry(day.unwrap_or_else(|| "unknown".into()))
            .or_default();
        day.0 += runs;
        day.1.add(hi, lo);
        d.llm_calls += r.get::<_, i64>("llm_calls")?;
        d.tool_calls += r.get::<_, i64>("tool_calls")?;
        d.tool_errors += r.get::<_, i64>("tool_errors")?;
        d.cached_calls += r.get::<_, i64>("cached_calls")?;
        d.unpriced_calls += r.get::<_, i64>("unpriced_calls")?;
        input.add(r.get("in_hi")?, r.get("in_lo")?);
        output.add(r.get("out_hi")?, r.get("out_lo")?);
        unpriced_tokens.add(r.get("unp_hi")?, r.get("unp_lo")?);
    }
    const TOKEN_UNIT: i128 = 1_000_000_000;
    d.total_cost_picousd = cost.value(1_000_000);
    d.total_cost_usd = picousd_to_usd(d.total_cost_picousd);
    d.input_tokens = input.value(TOKEN_UNIT);
    d.output_tokens = output.value(TOKEN_UNIT);
    d.unpriced_tokens = unpriced_tokens.value(TOKEN_UNIT);
    d.cost_by_day = days
        .into_iter()
        .filter(|(_, (runs, _))| *runs != 0)
        .map(|(day, (runs, cost))| DayStats {
            day,
            runs,
            cost_usd: picousd_to_usd(cost.value(1_000_000)),
        })
        .collect();
    Ok(d)
}

impl Dashboard {
    fn empty() -> Dashboard {
        Dashboard {
            runs: 0,
            runs_by_status: BTreeMap::new(),
            llm_calls: 0,
            tool_calls: 0,
            llm_latency_ms: Percentiles::default(),
            tool_latency_ms: Percentiles::default(),
            run_duration_ms: Percentiles::default(),
            avg_cost_usd: None,
            total_cost_usd: 0.0,
            total_cost_picousd: 0,
            unpriced_calls: 0,
            unpriced_tokens: 0,
            input_tokens: 0,
            output_tokens: 0,
            tool_errors: 0,
            tool_error_rate: None,
            cached_calls: 0,
            cache_hit_rate: None,
            by_model: Vec::new(),
            by_tool: Vec::new(),
            alerts: 0,
            recent_alerts: Vec::new(),
            cost_by_day: Vec::new(),
            llm_latency_histogram: Vec::new(),
        }
    }
}

/// The exact value at percentile `p` of a set described by ascending `(bucket, count)` pairs.
/// `values_of(bucket)` returns the bucket's values, ascending: only the bucket holding rank `k`
/// (and, when `k` is its last value, the next one) is ever read.
fn bucket_percentile(
    buckets: &[(i64, i64)],
    p: f64,
    mut values_of: impl FnMut(i64) -> Result<Vec<f64>>,
) -> Result<Option<f64>> {
    let n: i64 = buckets.iter().map(|(_, c)| c).sum();
    if n <= 0 {
        return Ok(None);
    }
    let (lo, frac) = rank(n as u64, p);
    let lo = lo as i64;
    let mut before = 0;
    for (i, &(bucket, count)) in buckets.iter().enumerate() {
        if lo >= before + count {
            before += count;
            continue;
        }
        let values = values_of(bucket)?;
        let j = (lo - before) as usize;
        let Some(&a) = values.get(j) else {
            return Ok(None);
        };
        if frac == 0.0 {
            return Ok(Some(a));
        }
        let b = match values.get(j + 1) {
            Some(&b) => b,
            None => match buckets.get(i + 1) {
                Some(&(next, _)) => values_of(next)?.first().copied().unwrap_or(a),
                None => a,
            },
        };
        return Ok(Some(interpolate(a, b, frac)));
    }
    Ok(None)
}

/// The values of `bucket` over `keys` (merged, ascending), read with `sql` on the per-key index.
fn bucket_values<'k>(
    conn: &Connection,
    sql: &SeriesSql,
    keys: impl Iterator<Item = (&'k String, &'k KeyHistogram)> + Clone,
    bucket: i64,
) -> Result<Vec<f64>> {
    let (lo, hi) = (bucket_floor(bucket), bucket_floor(bucket + 1));
    // The keys with values in this bucket, and how many (from the histogram, no scan).
    let mut count = 0;
    let holders: Vec<&String> = keys
        .filter_map(|(name, k)| {
            let i = k.buckets.binary_search_by_key(&bucket, |&(b, _)| b).ok()?;
            count += k.buckets[i].1;
            Some(name)
        })
        .collect();
    // All values equal (a constant latency, say): answer from two index probes per key.
    let mut range: Option<(f64, f64)> = None;
    let mut minmax = conn.prepare_cached(sql.minmax)?;
    for key in &holders {
        let (min, max): (Option<f64>, Option<f64>) =
            minmax.query_row(params![key, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if let (Some(min), Some(max)) = (min, max) {
            range = Some(match range {
                None => (min, max),
                Some((a, b)) => (a.min(min), b.max(max)),
            });
        }
    }
    let mut stmt = conn.prepare_cached(sql.range)?;
    let mut values = Vec::new();
    match range {
        Some((min, max)) if min == max => values.resize(count as usize, min),
        _ => {
            for key in &holders {
                let rows = stmt.query_map(params![key, lo, hi], |r| r.get::<_, f64>(0))?;
                for v in rows {
                    values.push(v?);
                }
            }
            values.sort_unstable_by(f64::total_cmp);
        }
    }
    Ok(values)
}

/// p50 and p95 over `keys` (one key: its own figures; several: merged).
fn series_percentiles<'k>(
    conn: &Connection,
    sql: &SeriesSql,
    keys: impl Iterator<Item = (&'k String, &'k KeyHistogram)> + Clone,
) -> Result<Percentiles> {
    let buckets = merge_buckets(keys.clone().map(|(_, k)| k));
    let mut read = |b| bucket_values(conn, sql, keys.clone(), b);
    Ok(Percentiles {
        p50: bucket_percentile(&buckets, P50, &mut read)?,
        p95: bucket_percentile(&buckets, P95, &mut read)?,
    })
}

fn merge_buckets<'a>(keys: impl Iterator<Item = &'a KeyHistogram>) -> Vec<(i64, i64)> {
    let mut merged: BTreeMap<i64, i64> = BTreeMap::new();
    for k in keys {
        for &(b, c) in &k.buckets {
            *merged.entry(b).or_insert(0) += c;
        }
    }
    merged.into_iter().collect()
}

/// Unfiltered: per-model and per-tool figures and all percentiles from the histogram.
fn calls_from_histogram(conn: &Connection, d: &mut Dashboard) -> Result<()> {
    let mut series: HashMap<String, BTreeMap<String, KeyHistogram>> = HashMap::new();
    let mut stmt = conn.prepare_cached(HISTOGRAM)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let s: String = r.get("series")?;
        let key: String = r.get("key")?;
        let k = series.entry(s).or_default().entry(key).or_default();
        let calls: i64 = r.get("calls")?;
        if calls == 0 {
            continue;
        }
        k.buckets.push((r.get("bucket")?, calls));
        k.calls += calls;
        k.errors += r.get::<_, i64>("errors")?;
        k.cached_calls += r.get::<_, i64>("cached_calls")?;
        k.unpriced_calls += r.get::<_, i64>("unpriced_calls")?;
        k.input_tokens += r.get::<_, i64>("input_tokens")? as i128;
        k.output_tokens += r.get::<_, i64>("output_tokens")? as i128;
        k.cost
            .add(r.get("cost_microusd")?, r.get("cost_rem_picousd")?);
    }
    let empty = BTreeMap::new();
    let llm = series.get("llm").unwrap_or(&empty);
    let tool = series.get("tool").unwrap_or(&empty);
    let run = series.get("run").unwrap_or(&empty);

    d.llm_latency_ms = series_percentiles(conn, &LLM_SQL, llm.iter())?;
    let llm_all = merge_buckets(llm.values());
    d.llm_latency_histogram = latency_bins(llm_all.iter().map(|&(b, c)| (bucket_floor(b), c)));
    d.tool_latency_ms = series_percentiles(conn, &TOOL_SQL, tool.iter())?;
    d.run_duration_ms = series_percentiles(conn, &RUN_SQL, run.iter())?;

    for (model, k) in llm {
        let p = series_percentiles(conn, &LLM_SQL, std::iter::once((model, k)))?;
        let cost = k.cost.value(1_000_000);
        d.by_model.push(ModelStats {
            model: model.clone(),
            calls: k.calls,
            input_tokens: k.input_tokens,
            output_tokens: k.output_tokens,
            cost_usd: picousd_to_usd(cost),
            cost_picousd: cost,
            unpriced_calls: k.unpriced_calls,
            cached_calls: k.cached_calls,
            p50_latency_ms: p.p50,
            p95_latency_ms: p.p95,
        });
    }
    for (name, k) in tool {
        let p = series_percentiles(conn, &TOOL_SQL, std::iter::once((name, k)))?;
        d.by_tool.push(ToolStats {
            tool: name.clone(),
            calls: k.calls,
            errors: k.errors,
            error_rate: rate(k.errors, k.calls),
            p50_latency_ms: p.p50,
            p95_latency_ms: p.p95,
        });
    }
    sort_breakdowns(d);
    Ok(())
}

fn sort_breakdowns(d: &mut Dashboard) {
    d.by_model.sort_by(|a, b| {
        b.cost_picousd
            .cmp(&a.cost_picousd)
            .then(b.calls.cmp(&a.calls))
            .then(a.model.cmp(&b.model))
    });
    d.by_tool
        .sort_by(|a, b| b.calls.cmp(&a.calls).then(a.tool.cmp(&b.tool)));
}

fn sorted_percentiles(values: &mut [f64]) -> Percentiles {
    values.sort_unstable_by(f64::total_cmp);
    Percentiles {
        p50: percentile::percentile(values, P50),
        p95: percentile::percentile(values, P95),
    }
}

/// Filtered: the calls of the runs in scope, read through the per-run indexes.
fn calls_in_scope(conn: &Connection, scope: &Scope, d: &mut Dashboard) -> Result<()> {
    #[derive(Default)]
    struct ModelAcc {
        latencies: Vec<f64>,
        input: i128,
        output: i128,
        cost: i128,
        unpriced: i64,
        cached: i64,
    }
    let mut models: BTreeMap<String, ModelAcc> = BTreeMap::new();
    let mut all = Vec::new();
    let mut stmt = conn.prepare_cached(SCOPE_LLM_CALLS)?;
    let mut rows = stmt.query(scope.params())?;
    while let Some(r) = rows.next()? {
        // Borrow the name: one allocation per model, not per call.
        let model = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        let latency: f64 = r.get(1)?;
        if !models.contains_key(model) {
            models.insert(model.to_string(), ModelAcc::default());
        }
        let acc = models.get_mut(model).expect("inserted above");
        acc.latencies.push(latency);
        all.push(latency);
        acc.input += r.get::<_, i64>(2)? as i128;
        acc.output += r.get::<_, i64>(3)? as i128;
        match r.get::<_, Option<i64>>(4)? {
            Some(c) => acc.cost += c as i128,
            None => acc.unpriced += 1,
        }
        acc.cached += i64::from(r.get::<_, bool>(5)?);
    }
    d.llm_latency_ms = sorted_percentiles(&mut all);
    d.llm_latency_histogram = latency_bins(all.iter().map(|&v| (v, 1)));
    for (model, mut acc) in models {
        let p = sorted_percentiles(&mut acc.latencies);
        d.by_model.push(ModelStats {
            model,
            calls: acc.latencies.len() as i64,
            input_tokens: acc.input,
            output_tokens: acc.output,
            cost_usd: picousd_to_usd(acc.cost),
            cost_picousd: acc.cost,
            unpriced_calls: acc.unpriced,
            cached_calls: acc.cached,
            p50_latency_ms: p.p50,
            p95_latency_ms: p.p95,
        });
    }

    let mut tools: BTreeMap<String, (Vec<f64>, i64)> = BTreeMap::new();
    let mut all = Vec::new();
    let mut stmt = conn.prepare_cached(SCOPE_TOOL_CALLS)?;
    let mut rows = stmt.query(scope.params())?;
    while let Some(r) = rows.next()? {
        let tool = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        let latency: f64 = r.get(1)?;
        let success: bool = r.get(2)?;
        if !tools.contains_key(tool) {
            tools.insert(tool.to_string(), Default::default());
        }
        let acc = tools.get_mut(tool).expect("inserted above");
        acc.0.push(latency);
        acc.1 += i64::from(!success);
        all.push(latency);
    }
    d.tool_latency_ms = sorted_percentiles(&mut all);
    for (tool, (mut latencies, errors)) in tools {
        let p = sorted_percentiles(&mut latencies);
        let calls = latencies.len() as i64;
        d.by_tool.push(ToolStats {
            tool,
            calls,
            errors,
            error_rate: rate(errors, calls),
            p50_latency_ms: p.p50,
            p95_latency_ms: p.p95,
        });
    }

    let mut durations = conn
        .prepare_cached(SCOPE_DURATIONS)?
        .query_map(scope.params(), |r| r.get::<_, f64>(0))?
        .collect::<rusqlite::Result<Vec<f64>>>()?;
    d.run_duration_ms = sorted_percentiles(&mut durations);
    sort_breakdowns(d);
    Ok(())
}

/// Groups `(value, count)` pairs into log-spaced bins (4 per decade) for a histogram chart.
fn latency_bins(values: impl Iterator<Item = (f64, i64)>) -> Vec<LatencyBin> {
    const PER_DECADE: f64 = 4.0;
    let bin_of = |v: f64| -> i32 {
        if v <= 1.0 {
            0
        } else {
            (v.log10() * PER_DECADE).floor() as i32 + 1
        }
    };
    let bound = |i: i32| -> f64 {
        if i <= 0 {
            0.0
        } else {
            10f64.powf((i - 1) as f64 / PER_DECADE)
        }
    };
    let mut bins: BTreeMap<i32, i64> = BTreeMap::new();
    for (v, c) in values {
        *bins.entry(bin_of(v)).or_insert(0) += c;
    }
    let (Some(&first), Some(&last)) = (bins.keys().next(), bins.keys().next_back()) else {
        return Vec::new();
    };
    (first..=last)
        .map(|i| LatencyBin {
            lo_ms: bound(i),
            hi_ms: bound(i + 1),
            calls: bins.get(&i).copied().unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql` as text, one step per line.
    pub(crate) fn plan(conn: &Connection, sql: &str) -> String {
        let n = conn.prepare(sql).unwrap().parameter_count();
        let params: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Integer(1)).collect();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn dashboard_queries_use_their_indexes() {
        let conn =
            crate::store::migrate::open_memory(&crate::store::migrate::ConnConfig::test()).unwrap();
        let expected = [
            (
                "range_llm",
                "INDEX llm_calls_by_model_latency (model=? AND latency_ms>? AND latency_ms<?)",
            ),
            (
                "range_tool",
                "INDEX tool_calls_by_tool_latency (tool_name=? AND latency_ms>? AND latency_ms<?)",
            ),
            (
                "range_run",
                "INDEX runs_by_duration (duration_ms>? AND duration_ms<?)",
            ),
            (
                "minmax_llm",
                "INDEX llm_calls_by_model_latency (model=? AND latency_ms>? AND latency_ms<?)",
            ),
            (
                "minmax_tool",
                "INDEX tool_calls_by_tool_latency (tool_name=? AND latency_ms>? AND latency_ms<?)",
            ),
            (
                "scope_llm_calls",
                "COVERING INDEX llm_calls_by_run (run_id=?)",
            ),
            (
                "scope_tool_calls",
                "COVERING INDEX tool_calls_by_run (run_id=?)",
            ),
        ];
        for (name, sql) in PLANNED_QUERIES {
            let want = expected.iter().find(|(n, _)| n == name).unwrap().1;
            let p = plan(&conn, sql);
            assert!(p.contains(want), "{name}: plan lost its index:\n{p}");
            assert!(
                !p.contains("TEMP B-TREE"),
                "{name}: sorts instead of walking an index:\n{p}"
            );
        }
        // The scoped time filter walks the started_at index, not the whole table.
        let p = plan(&conn, RUN_TOTALS);
        assert!(
            p.contains("INDEX runs_by_started_at (started_at>? AND started_at<?)"),
            "{p}"
        );
        let p = plan(&conn, DAILY_TOTALS);
        assert!(
            p.contains("INDEX runs_by_status (status=?)"),
            "running runs found by index:\n{p}"
        );
        let p = plan(&conn, RECENT_ALERTS_ALL);
        assert!(p.contains("INDEX alerts_by_fired_at"), "{p}");
        let p = plan(&conn, SCOPE_LLM_CALLS);
        assert!(
            p.starts_with("SEARCH runs USING INDEX runs_by_started_at"),
            "{p}"
        );
    }

    #[test]
    fn average_is_exact_quotient() {
        assert_eq!(exact_ratio_usd(3_000_000_000_000, 3), 1.0);
        assert_eq!(exact_ratio_usd(1_000_000_000_000, 3), 1.0 / 3.0);
        assert_eq!(exact_ratio_usd(1, 1), 1e-12);
    }

    #[test]
    fn bucket_percentile_picks_right_rank() {
        let mut values: Vec<f64> = (0..1000).map(|i| (i * 37 % 1000) as f64 * 1.7).collect();
        values.sort_by(f64::total_cmp);
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for v in &values {
            *buckets.entry(percentile::bucket(*v)).or_insert(0) += 1;
        }
        let buckets: Vec<_> = buckets.into_iter().collect();
        for p in [0.0, 0.5, 0.95, 1.0] {
            let got = bucket_percentile(&buckets, p, |b| {
                Ok(values
                    .iter()
                    .copied()
                    .filter(|v| percentile::bucket(*v) == b)
                    .collect())
            })
            .unwrap();
            assert_eq!(got, percentile::percentile(&values, p), "p = {p}");
        }
    }
}
