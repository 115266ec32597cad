//! Shared fixtures: temp databases, record builders, and independent checks of a file's state.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentobs::{LlmCall, Pipeline, Pricing, ToolCall};
use rusqlite::Connection;

/// The pricing table most tests use (native format, USD per 1M tokens).
pub const PRICES: &str = r#"{
    "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75,
                        "tiers": [{"above_input_tokens": 200000, "input": 6.0, "output": 22.5}]},
    "cheap": {"input": 0.000001, "output": 0.000003}
}"#;

pub fn pricing() -> Pricing {
    Pricing::from_json_str(PRICES).unwrap()
}

/// A temp dir and a database path inside it (the dir is removed when dropped).
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentobs.db");
    (dir, path)
}

pub fn open(path: &Path) -> Pipeline {
    Pipeline::open(path, pricing()).unwrap()
}

pub fn llm(call_id: &str, run_id: &str, input: i64, output: i64) -> LlmCall {
    LlmCall {
        call_id: call_id.into(),
        run_id: run_id.into(),
        model: "gpt-4o".into(),
        input_tokens: input,
        output_tokens: output,
        latency_ms: 500.0,
        timestamp: Some(1_750_000_000.0),
        ..Default::default()
    }
}

pub fn tool(call_id: &str, run_id: &str, success: bool) -> ToolCall {
    ToolCall {
        call_id: call_id.into(),
        run_id: run_id.into(),
        tool_name: "search".into(),
        latency_ms: 120.0,
        success,
        error: (!success).then(|| "boom".to_string()),
        timestamp: Some(1_750_000_001.0),
        ..Default::default()
    }
}

/// Every row of every table, as text, in a stable order: equal snapshots mean the database
/// content is unchanged.
pub fn snapshot(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    let mut out = String::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in tables {
        out.push_str(&format!("## {t}\n"));
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                out.push_str(&format!("{v:?}|"));
            }
            out.push('\n');
        }
    }
    out
}

/// A live writer: records a tool call into run `live` every 5 ms until `stop`, panicking at the
/// first refusal (a `Busy` when a long job starves it); returns how many it recorded.
pub fn record_until(p: &Pipeline, stop: &std::sync::atomic::AtomicBool) -> i64 {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        p.record_tool_call(tool(&format!("live-{n}"), "live", true))
            .unwrap_or_else(|e| panic!("live write {n} refused: {e}"));
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    n
}

/// Asserts that every run's rollup columns equal a fresh aggregate over its child rows, and
/// that the latency histogram's counts equal the call tables'.
pub fn assert_rollups_consistent(conn: &Connection) {
    // All checks in one read transaction: one snapshot, even while writers go on.
    let own_tx = conn.is_autocommit();
    if own_tx {
        conn.execute_batch("BEGIN DEFERRED").unwrap();
    }
    let bad: Vec<(String, String)> = conn
        .prepare(
            "WITH l AS (SELECT run_id, count(*) n, sum(input_tokens) i, sum(output_tokens) o,
                               coalesce(sum(cost_picousd), 0) c, count(*) - count(cost_picousd) u,
                               sum(cached) k
                        FROM llm_calls GROUP BY run_id),
                  t AS (SELECT run_id, count(*) n, sum(NOT success) e FROM tool_calls GROUP BY run_id)
             SELECT r.run_id, r.llm_calls || ',' || r.tool_calls || ',' || r.tool_errors || ','
                    || r.input_tokens || ',' || r.output_tokens || ',' || r.cost_picousd || ','
                    || r.unpriced_calls || ',' || r.cached_calls
                    || ' vs ' || coalesce(l.n, 0) || ',' || coalesce(t.n, 0) || ','
                    || coalesce(t.e, 0) || ',' || coalesce(l.i, 0) || ',' || coalesce(l.o, 0)
                    || ',' || coalesce(l.c, 0) || ',' || coalesce(l.u, 0) || ',' || coalesce(l.k, 0)
             FROM runs r LEFT JOIN l USING (run_id) LEFT JOIN t USING (run_id)
             WHERE r.llm_calls <> coalesce(l.n, 0) OR r.tool_calls <> coalesce(t.n, 0)
                OR r.tool_errors <> coalesce(t.e, 0) OR r.input_tokens <> coalesce(l.i, 0)
                OR r.output_tokens <> coalesce(l.o, 0) OR r.cost_picousd <> coalesce(l.c, 0)
                OR r.unpriced_calls <> coalesce(l.u, 0) OR r.cached_calls <> coalesce(l.k, 0)
                OR r.cost_usd <> r.cost_picousd / 1e12",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(bad.is_empty(), "rollups disagree with rows: {bad:?}");
    let hist: (i64, i64) = conn
        .query_row(
            "SELECT coalesce(sum(calls) FILTER (WHERE series = 'llm'), 0),
                    coalesce(sum(calls) FILTER (WHERE series = 'tool'), 0)
             FROM latency_histogram",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let rows: (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM llm_calls), (SELECT count(*) FROM tool_calls)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(hist, rows, "histogram counts disagree with the call tables");
    let daily_mismatch: i64 = conn
        .query_row(
            "WITH r AS (SELECT date(started_at, 'unixepoch') AS day, status, count(*) AS runs,
                               sum(llm_calls) AS l, sum(tool_calls) AS t, sum(tool_errors) AS e,
                               sum(cached_calls) AS k, sum(unpriced_calls) AS u,
                               sum(input_tokens) AS i, sum(output_tokens) AS o,
                               sum(cost_picousd) AS c
                        FROM runs WHERE status <> 'running' GROUP BY 1, 2),
                  d AS (SELECT day, status, runs, llm_calls AS l, tool_calls AS t,
                               tool_errors AS e, cached_calls AS k, unpriced_calls AS u,
                               input_tokens_hi * 1000000000 + input_tokens_lo AS i,
                               output_tokens_hi * 1000000000 + output_tokens_lo AS o,
                               cost_microusd * 1000000 + cost_rem_picousd AS c
                        FROM daily_totals
                        WHERE runs <> 0 OR l <> 0 OR t <> 0 OR i <> 0 OR o <> 0 OR c <> 0)
             SELECT (SELECT count(*) FROM (SELECT * FROM r EXCEPT SELECT * FROM d))
                  + (SELECT count(*) FROM (SELECT * FROM d EXCEPT SELECT * FROM r))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        daily_mismatch, 0,
        "daily_totals disagree with the ended runs"
    );
    if own_tx {
        conn.execute_batch("COMMIT").unwrap();
    }
}

/// Runs the built `agentobs` executable with `args` (and no inherited AGENTOBS_DB).
pub fn agentobs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentobs"))
        .args(args)
        .env_remove("AGENTOBS_DB")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
