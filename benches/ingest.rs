//! Write throughput: `record_llm_call` one per transaction and `record_batch` of 1,000, each
//! beside bare rusqlite baselines (plain INSERT + COMMIT per row; one INSERT loop per
//! transaction), on an empty file and on one already holding 100,000 runs:
//! - "bare INSERT": the same row into the same `llm_calls` table (same indexes), so the ratio is
//!   the cost of what agentobs adds: validation, pricing, the duplicate check, the run rollup,
//!   the histogram and the alert rules;
//! - "bare INSERT, PK-only table": the same row into a table with only a primary key, the floor
//!   that no indexed ledger can reach (reported for scale).
//!
//! A case with 5 alert rules shows the cost of evaluating them in the write transaction.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use agentobs::{LlmCall, Pipeline, Pricing, Record};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rusqlite::{params, Connection};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn call(run: u64) -> LlmCall {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    LlmCall {
        call_id: format!("bench-{n}"),
        run_id: format!("bench-run-{run}"),
        step: n as i64,
        model: ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"][(n % 3) as usize].into(),
        input_tokens: 1000 + (n % 5000) as i64,
        output_tokens: 200 + (n % 700) as i64,
        latency_ms: 300.0 + ((n * 7919) % 4000) as f64 * 0.731,
        timestamp: Some(1_790_000_000.0 + n as f64),
        metadata: Some(serde_json::json!({"attempt": 1})),
        ..LlmCall::default()
    }
}

/// A table with the columns of `llm_calls`, its primary key, nothing else.
const BARE_TABLE: &str = "CREATE TABLE IF NOT EXISTS bare_llm_calls (
    call_id TEXT PRIMARY KEY NOT NULL, run_id TEXT NOT NULL, step INTEGER NOT NULL,
    model TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER, cache_write_tokens INTEGER, reasoning_tokens INTEGER,
    latency_ms REAL NOT NULL, cost_usd REAL, cost_picousd INTEGER, cost_source TEXT NOT NULL,
    timestamp REAL NOT NULL, cached INTEGER NOT NULL, error TEXT, metadata TEXT) STRICT";
const BARE_INSERT: &str = "INSERT INTO bare_llm_calls VALUES
    (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";
const SAME_TABLE_INSERT: &str = "INSERT INTO llm_calls (call_id, run_id, step, model,
    input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens,
    latency_ms, cost_usd, cost_picousd, cost_source, timestamp, cached, error, metadata)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

fn bare_insert(conn: &Connection, sql: &str, c: &LlmCall) {
    conn.prepare_cached(sql)
        .unwrap()
        .execute(params![
            c.call_id,
            c.run_id,
            c.step,
            c.model,
            c.input_tokens,
            c.output_tokens,
            c.cached_input_tokens,
            c.cache_write_tokens,
            c.reasoning_tokens,
            c.latency_ms,
            0.01,
            10_000_000_000i64,
            "computed",
            c.timestamp,
            c.cached,
            c.error,
            c.metadata.as_ref().map(|m| m.to_string()),
        ])
        .unwrap();
}

/// A connection configured as agentobs configures its writer, on a migrated file, with the
/// PK-only table and a run for the same-table inserts to reference.
fn bare_conn(path: &Path) -> Connection {
    drop(Pipeline::open(path, Pricing::builtin()).unwrap());
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -49152;
         PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 10000;",
    )
    .unwrap();
    conn.execute_batch(BARE_TABLE).unwrap();
    for run in [2, 3] {
        conn.execute(
            "INSERT OR IGNORE INTO runs (run_id, started_at) VALUES (?1, 0)",
            [format!("bench-run-{run}")],
        )
        .unwrap();
    }
    conn
}

fn set_rules(p: &Pipeline, rules: usize) {
    let all = [
        ("cost_usd", 1e9),
        ("tokens", 1e15),
        ("llm_calls", 1e12),
        ("llm_latency_ms", 1e9),
        ("error_rate", 0.99),
    ];
    for (metric, threshold) in all.iter().take(rules) {
        p.set_alert(metric, *threshold).unwrap();
    }
}

fn ingest(c: &mut Criterion, label: &str, source: Option<&Path>) {
    let fresh = || match source {
        Some(src) => common::copy_of(src),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bench.db");
            (dir, path)
        }
    };

    let mut g = c.benchmark_group(format!("ingest/single/{label}"));
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for rules in [0, 5] {
        let (_dir, path) = fresh();
        let p = Pipeline::open(&path, Pricing::builtin()).unwrap();
        set_rules(&p, rules);
        g.bench_function(format!("record_llm_call ({rules} rules)"), |b| {
            b.iter(|| {
                let fired = p.record_llm_call(call(1)).unwrap();
                assert!(fired.is_empty());
            })
        });
    }
    for (name, sql) in [
        ("bare INSERT + COMMIT", SAME_TABLE_INSERT),
        ("bare INSERT + COMMIT, PK-only table", BARE_INSERT),
    ] {
        let (_dir, path) = fresh();
        let conn = bare_conn(&path);
        g.bench_function(name, |b| {
            b.iter(|| {
                let c = call(2);
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                bare_insert(&conn, sql, &c);
                conn.execute_batch("COMMIT").unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("ingest/batch1000/{label}"));
    g.throughput(Throughput::Elements(1000));
    g.sample_size(10);
    for rules in [0, 5] {
        let (_dir, path) = fresh();
        let p = Pipeline::open(&path, Pricing::builtin()).unwrap();
        set_rules(&p, rules);
        g.bench_function(format!("record_batch ({rules} rules)"), |b| {
            b.iter_batched(
                || {
                    (0..1000)
                        .map(|i| Record::Llm(call(10 + i % 20)))
                        .collect::<Vec<_>>()
                },
                |batch| {
                    let outcome = p.record_batch(batch).unwrap();
                    assert_eq!(outcome.recorded, 1000);
                },
                BatchSize::LargeInput,
            )
        });
    }
    for (name, sql) in [
        ("bare INSERT loop + COMMIT", SAME_TABLE_INSERT),
        ("bare INSERT loop + COMMIT, PK-only table", BARE_INSERT),
    ] {
        let (_dir, path) = fresh();
        let conn = bare_conn(&path);
        g.bench_function(name, |b| {
            b.iter_batched(
                || (0..1000).map(|_| call(3)).collect::<Vec<_>>(),
                |batch| {
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    for c in &batch {
                        bare_insert(&conn, sql, c);
                    }
                    conn.execute_batch("COMMIT").unwrap();
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    ingest(c, "empty", None);
    let runs = std::env::var("AGENTOBS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let big = common::prepared_db(runs);
    ingest(c, &format!("{runs}-runs"), Some(&big));
}

criterion_group!(ingest_benches, benches);
criterion_main!(ingest_benches);
