//! The store: opening files, the run lifecycle, every recording rule, and rollup consistency.

use std::fs;

use agentobs::{Error, LlmCall, Pipeline, Pricing, Record, ToolCall};
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::json;

use crate::util::{assert_rollups_consistent, llm, open, pricing, snapshot, temp_db, tool};

#[test]
fn pipeline_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pipeline>();
}

#[test]
fn write_drop_reopen_read_back() {
    let (_dir, path) = temp_db();
    {
        let p = open(&path);
        p.start_run("r1", json!({"agent": "a"})).unwrap();
        p.record_llm_call(llm("c1", "r1", 1_000_000, 100_000))
            .unwrap();
        p.record_tool_call(tool("t1", "r1", false)).unwrap();
    }
    let p = open(&path);
    let s = p.end_run("r1", "success").unwrap();
    assert_eq!(s.metadata, json!({"agent": "a"}));
    assert_eq!((s.llm_calls, s.tool_calls, s.tool_errors), (1, 1, 1));
    assert_eq!(s.error_rate, Some(1.0));
    // 1M input at 2.5 + 100k output at 10 per 1M = 2.5 + 1.0
    assert_eq!(s.cost_picousd, 3_500_000_000_000);
    assert_eq!(s.cost_usd, 3.5);
    assert!(s.duration_ms.is_some());
    assert_eq!(s.status, "success");
    let conn = Connection::open(&path).unwrap();
    let (mode, version, app): (String, i64, i64) = conn
        .query_row(
            "SELECT (SELECT journal_mode FROM pragma_journal_mode), (SELECT user_version FROM pragma_user_version), (SELECT application_id FROM pragma_application_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, 1);
    assert_eq!(app, 0x4147_4F42);
    assert_rollups_consistent(&conn);
}

#[test]
fn two_pipelines_share_one_file() {
    let (_dir, path) = temp_db();
    let a = open(&path);
    let b = open(&path);
    a.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    b.record_llm_call(llm("c2", "r1", 10, 10)).unwrap();
    assert_eq!(a.run("r1").unwrap().unwrap().llm_calls, 2);
    b.end_run("r1", "success").unwrap();
    assert!(matches!(
        a.record_llm_call(llm("c3", "r1", 1, 1)),
        Err(Error::RunEnded { .. })
    ));
}

#[test]
fn a_record_for_an_unknown_run_starts_it() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.record_tool_call(tool("t1", "implicit", true)).unwrap();
    let run = p.run("implicit").unwrap().unwrap();
    assert_eq!(run.status, "running");
    assert_eq!(run.metadata, json!({}));
    assert_eq!(run.started_at, 1_750_000_001.0);
}

/// Each case must fail with the expected error and leave the file byte-for-byte the same.
fn assert_rejected(
    path: &std::path::Path,
    p: &Pipeline,
    what: &str,
    f: impl FnOnce(&Pipeline) -> agentobs::Result<()>,
    check: impl FnOnce(&Error) -> bool,
) {
    let before = snapshot(path);
    match f(p) {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => assert!(check(&e), "{what}: unexpected error {e:?}"),
    }
    assert_eq!(before, snapshot(path), "{what}: database changed");
}

#[test]
fn lifecycle_errors_are_typed_and_write_nothing() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.start_run("r1", json!({})).unwrap();
    p.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    assert_rejected(
        &path,
        &p,
        "second start",
        |p| p.start_run("r1", json!({})),
        |e| matches!(e, Error::RunExists { run_id } if run_id == "r1"),
    );
    assert_rejected(
        &path,
        &p,
        "end unknown",
        |p| p.end_run("nope", "success").map(|_| ()),
        |e| matches!(e, Error::UnknownRun { .. }),
    );
    assert_rejected(
        &path,
        &p,
        "end as running",
        |p| p.end_run("r1", "running").map(|_| ()),
        |e| {
            matches!(
                e,
                Error::InvalidValue {
                    field: "status",
                    ..
                }
            )
        },
    );
    p.end_run("r1", "failed").unwrap();
    assert_rejected(
        &path,
        &p,
        "second end",
        |p| p.end_run("r1", "success").map(|_| ()),
        |e| matches!(e, Error::RunEnded { status, .. } if status == "failed"),
    );
    assert_rejected(
        &path,
        &p,
        "record after end",
        |p| p.record_llm_call(llm("c2", "r1", 1, 1)).map(|_| ()),
        |e| matches!(e, Error::RunEnded { .. }),
    );
    assert_rejected(
        &path,
        &p,
        "tool after end",
        |p| p.record_tool_call(tool("t2", "r1", true)).map(|_| ()),
        |e| matches!(e, Error::RunEnded { .. }),
    );
    // A retry of a call stored before the run ended is still accepted, as a no-op.
    let before = snapshot(&path);
    assert!(p
        .record_llm_call(llm("c1", "r1", 10, 10))
        .unwrap()
        .is_empty());
    assert_eq!(before, snapshot(&path));
}

#[test]
fn retries_are_idempotent_and_conflicts_rejected() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    p.record_tool_call(tool("t1", "r1", true)).unwrap();
    let before = snapshot(&path);
    // Same content again: accepted once.
    p.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    p.record_tool_call(tool("t1", "r1", true)).unwrap();
    // A retry that leaves the timestamp to "now" matches the stored call.
    p.record_llm_call(LlmCall {
        timestamp: None,
        ..llm("c1", "r1", 10, 10)
    })
    .unwrap();
    let outcome = p
        .record_batch([
            Record::Llm(llm("c1", "r1", 10, 10)),
            Record::Tool(tool("t1", "r1", true)),
        ])
        .unwrap();
    assert_eq!((outcome.recorded, outcome.duplicates), (0, 2));
    assert_eq!(before, snapshot(&path));
    assert_rejected(
        &path,
        &p,
        "conflicting llm",
        |p| p.record_llm_call(llm("c1", "r1", 11, 10)).map(|_| ()),
        |e| {
            matches!(
                e,
                Error::ConflictingDuplicate {
                    kind: "llm_call",
                    field: "input_tokens",
                    ..
                }
            )
        },
    );
    assert_rejected(
        &path,
        &p,
        "conflicting tool",
        |p| p.record_tool_call(tool("t1", "r1", false)).map(|_| ()),
        |e| {
            matches!(
                e,
                Error::ConflictingDuplicate {
                    kind: "tool_call",
                    field: "success",
                    ..
                }
            )
        },
    );
    assert_rejected(
        &path,
        &p,
        "same id, other run",
        |p| p.record_llm_call(llm("c1", "r2", 10, 10)).map(|_| ()),
        |e| {
            matches!(
                e,
                Error::ConflictingDuplicate {
                    field: "run_id",
                    ..
                }
            )
        },
    );
    assert_rejected(
        &path,
        &p,
        "given cost on a computed call",
        |p| {
            p.record_llm_call(LlmCall {
                cost_usd: Some(0.5),
                ..llm("c1", "r1", 10, 10)
            })
            .map(|_| ())
        },
        |e| {
            matches!(
                e,
                Error::ConflictingDuplicate {
                    field: "cost_usd",
                    ..
                }
            )
        },
    );
}

#[test]
fn invalid_values_name_field_and_value_and_write_nothing() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.record_llm_call(llm("c0", "r1", 10, 10)).unwrap();
    let cases: Vec<(&str, Record)> = vec![
        (
            "latency_ms",
            Record::Llm(LlmCall {
                latency_ms: f64::NAN,
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "latency_ms",
            Record::Llm(LlmCall {
                latency_ms: -1.0,
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "latency_ms",
            Record::Tool(ToolCall {
                latency_ms: f64::INFINITY,
                ..tool("t1", "r1", true)
            }),
        ),
        ("input_tokens", Record::Llm(llm("c1", "r1", -5, 1))),
        ("output_tokens", Record::Llm(llm("c1", "r1", 5, -1))),
        (
            "cached_input_tokens",
            Record::Llm(LlmCall {
                cached_input_tokens: Some(8),
                cache_write_tokens: Some(3),
                ..llm("c1", "r1", 10, 1)
            }),
        ),
        (
            "reasoning_tokens",
            Record::Llm(LlmCall {
                reasoning_tokens: Some(2),
                ..llm("c1", "r1", 10, 1)
            }),
        ),
        ("call_id", Record::Llm(llm("", "r1", 1, 1))),
        ("run_id", Record::Tool(tool("t1", "", true))),
        (
            "model",
            Record::Llm(LlmCall {
                model: String::new(),
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "tool_name",
            Record::Tool(ToolCall {
                tool_name: String::new(),
                ..tool("t1", "r1", true)
            }),
        ),
        (
            "metadata",
            Record::Llm(LlmCall {
                metadata: Some(json!([1, 2])),
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "metadata",
            Record::Tool(ToolCall {
                metadata: Some(json!("text")),
                ..tool("t1", "r1", true)
            }),
        ),
        (
            "cost_usd",
            Record::Llm(LlmCall {
                cost_usd: Some(f64::NAN),
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "cost_usd",
            Record::Llm(LlmCall {
                cost_usd: Some(-0.01),
                ..llm("c1", "r1", 1, 1)
            }),
        ),
        (
            "timestamp",
            Record::Llm(LlmCall {
                timestamp: Some(f64::NEG_INFINITY),
                ..llm("c1", "r1", 1, 1)
            }),
        ),
    ];
    for (field, record) in cases {
        let before = snapshot(&path);
        // Alone, and as the last record of a batch whose first record is valid.
        for batch in [
            vec![record.clone()],
            vec![Record::Llm(llm("ok", "r2", 1, 1)), record.clone()],
        ] {
            match p.record_batch(batch) {
                Err(Error::InvalidValue {
                    field: f, value, ..
                }) => {
                    assert_eq!(f, field, "{record:?}");
                    assert!(!value.is_empty());
                }
                other => panic!("{field}: {other:?}"),
            }
            assert_eq!(before, snapshot(&path), "{field}: database changed");
        }
    }
    assert_rejected(
        &path,
        &p,
        "non-object run metadata",
        |p| p.start_run("r9", json!(3)),
        |e| {
            matches!(
                e,
                Error::InvalidValue {
                    field: "metadata",
                    ..
                }
            )
        },
    );
    let mut deep = json!({});
    for _ in 0..200 {
        deep = json!({ "a": deep });
    }
    assert_rejected(
        &path,
        &p,
        "metadata too deep",
        |p| p.start_run("r9", deep),
        |e| {
            matches!(
                e,
                Error::InvalidValue {
                    field: "metadata",
                    ..
                }
            )
        },
    );
}

#[test]
fn unknown_models_are_stored_unpriced_or_rejected_when_strict() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.record_llm_call(LlmCall {
        model: "mystery-1".into(),
        ..llm("c1", "r1", 100, 50)
    })
    .unwrap();
    p.record_llm_call(llm("c2", "r1", 1_000_000, 0)).unwrap();
    let s = p.run("r1").unwrap().unwrap();
    assert_eq!((s.unpriced_calls, s.unpriced_tokens), (1, 150));
    assert_eq!(s.cost_usd, 2.5, "only the priced call is in the total");
    let conn = Connection::open(&path).unwrap();
    let (cost, pico, source): (Option<f64>, Option<i64>, String) = conn
        .query_row(
            "SELECT cost_usd, cost_picousd, cost_source FROM llm_calls WHERE call_id = 'c1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((cost, pico, source.as_str()), (None, None, "unpriced"));
    drop(p);

    let strict = Pipeline::options()
        .strict_pricing(true)
        .open(&path, pricing())
        .unwrap();
    assert_rejected(
        &path,
        &strict,
        "strict unknown model",
        |p| {
            p.record_llm_call(LlmCall {
                model: "gpt-4oo".into(),
                ..llm("c3", "r1", 1, 1)
            })
            .map(|_| ())
        },
        |e| matches!(e, Error::UnknownModel { model, suggestions } if model == "gpt-4oo" && suggestions[0] == "gpt-4o"),
    );
}

#[test]
fn given_costs_are_kept_and_cache_hits_cost_nothing() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.record_llm_call(LlmCall {
        cost_usd: Some(0.123456789),
        ..llm("c1", "r1", 1_000_000, 0)
    })
    .unwrap();
    p.record_llm_call(LlmCall {
        cached: true,
        ..llm("c2", "r1", 1_000_000, 1_000_000)
    })
    .unwrap();
    p.record_llm_call(LlmCall {
        cached: true,
        model: "unknown".into(),
        ..llm("c3", "r1", 5, 5)
    })
    .unwrap();
    let s = p.run("r1").unwrap().unwrap();
    assert_eq!(s.cost_picousd, 123_456_789_000);
    assert_eq!((s.cached_calls, s.unpriced_calls), (2, 0));
}

#[test]
fn batches_are_all_or_nothing() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    p.end_run("r1", "success").unwrap();
    let before = snapshot(&path);
    let batch = vec![
        Record::Llm(llm("c2", "r2", 1, 1)),
        Record::Tool(tool("t2", "r2", true)),
        Record::Llm(llm("c3", "r1", 1, 1)), // r1 has ended
    ];
    assert!(matches!(p.record_batch(batch), Err(Error::RunEnded { .. })));
    assert_eq!(before, snapshot(&path));
    assert!(
        p.run("r2").unwrap().is_none(),
        "implicit start was rolled back"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let (dir, _) = temp_db();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text.db", b"hello, I am not a database\n".repeat(100)),
        ("zeros.db", vec![0u8; 8192]),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        let err = Pipeline::open(&path, pricing()).err().expect("refused");
        assert!(matches!(err, Error::NotADatabase { .. }), "{name}: {err:?}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "{name} was modified");
        assert!(!dir.path().join(format!("{name}-wal")).exists());
    }
    let err = Pipeline::open(dir.path(), pricing())
        .err()
        .expect("a directory is refused");
    assert!(matches!(err, Error::NotADatabase { .. }));
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let (_dir, path) = temp_db();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let bytes = fs::read(&path).unwrap();
    let err = Pipeline::open(&path, pricing()).err().expect("refused");
    assert!(
        matches!(
            err,
            Error::NotOurs {
                application_id: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn migrations_apply_from_version_zero_and_refuse_newer_files() {
    let (dir, path) = temp_db();
    // An empty SQLite file at user_version 0 (created by sqlite itself) is migrated.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 0; VACUUM;")
            .unwrap();
    }
    let p = open(&path);
    p.record_llm_call(llm("c1", "r1", 1, 1)).unwrap();
    drop(p);

    // A file from a newer agentobs: refused, byte-for-byte untouched (no WAL switch either).
    let newer = dir.path().join("newer.db");
    {
        let conn = Connection::open(&newer).unwrap();
        conn.execute_batch(
            "PRAGMA application_id = 1095192386; PRAGMA user_version = 99;
             CREATE TABLE runs (run_id TEXT);",
        )
        .unwrap();
    }
    let bytes = fs::read(&newer).unwrap();
    match Pipeline::open(&newer, pricing()) {
        Err(Error::SchemaTooNew {
            found: 99,
            supported: 1,
            ..
        }) => {}
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(fs::read(&newer).unwrap(), bytes);
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let (_dir, path) = temp_db();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let p = open(&path);
                p.record_tool_call(tool(
                    &format!("t{:?}", std::thread::current().id()),
                    "r",
                    true,
                ))
                .unwrap();
            });
        }
    });
    assert_eq!(open(&path).run("r").unwrap().unwrap().tool_calls, 4);
}

#[derive(Debug, Clone)]
enum Op {
    Start(u8),
    Llm {
        id: u8,
        run: u8,
        input: i64,
        output: i64,
        model: u8,
        cached: bool,
    },
    Tool {
        id: u8,
        run: u8,
        success: bool,
    },
    Bad {
        run: u8,
    },
    End(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Start),
        (
            0u8..30,
            0u8..4,
            0i64..5_000_000,
            0i64..500_000,
            0u8..4,
            any::<bool>()
        )
            .prop_map(|(id, run, input, output, model, cached)| Op::Llm {
                id,
                run,
                input,
                output,
                model,
                cached
            }),
        (0u8..30, 0u8..4, any::<bool>()).prop_map(|(id, run, success)| Op::Tool {
            id,
            run,
            success
        }),
        (0u8..4).prop_map(|run| Op::Bad { run }),
        (0u8..4).prop_map(Op::End),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// After any sequence of starts, records (valid, invalid, duplicate, conflicting) and ends,
    /// every run's rollups equal a fresh aggregate over its rows, and the exact cost total
    /// equals the sum of the stored calls' costs computed independently.
    #[test]
    fn rollups_always_equal_their_rows(ops in proptest::collection::vec(op(), 1..60)) {
        let (_dir, path) = temp_db();
        let p = open(&path);
        let models = ["gpt-4o", "claude-sonnet-4", "cheap", "unknown-model"];
        for op in ops {
            let _ = match op {
                Op::Start(r) => p.start_run(&format!("r{r}"), json!({"n": r})).map(|_| ()),
                Op::Llm { id, run, input, output, model, cached } => p
                    .record_llm_call(LlmCall {
                        model: models[model as usize].into(),
                        cached,
                        cached_input_tokens: Some(input / 3),
                        ..llm(&format!("c{id}"), &format!("r{run}"), input, output)
                    })
                    .map(|_| ()),
                Op::Tool { id, run, success } => p
                    .record_tool_call(tool(&format!("t{id}"), &format!("r{run}"), success))
                    .map(|_| ()),
                Op::Bad { run } => p
                    .record_llm_call(llm("bad", &format!("r{run}"), -1, 0))
                    .map(|_| ()),
                Op::End(r) => p.end_run(&format!("r{r}"), "success").map(|_| ()),
            };
            let conn = Connection::open(&path).unwrap();
            assert_rollups_consistent(&conn);
        }
        // Independent exact costs from the stored rows and the price table.
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT model, input_tokens, output_tokens, cached_input_tokens, cached, cost_picousd FROM llm_calls")
            .unwrap();
        type Row = (String, i64, i64, Option<i64>, bool, Option<i64>);
        let rows: Vec<Row> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut expected_total: i128 = 0;
        for (model, input, output, cached_in, cached, stored) in rows {
            let cached_in = cached_in.unwrap_or(0) as i128;
            // pico-USD per token: USD per 1M × 1e6
            let expected: Option<i128> = if cached {
                Some(0)
            } else {
                match model.as_str() {
                    "gpt-4o" => Some((input as i128 - cached_in) * 2_500_000 + cached_in * 1_250_000 + output as i128 * 10_000_000),
                    "claude-sonnet-4" if input > 200_000 => Some((input as i128 - cached_in) * 6_000_000 + cached_in * 300_000 + output as i128 * 22_500_000),
                    "claude-sonnet-4" => Some((input as i128 - cached_in) * 3_000_000 + cached_in * 300_000 + output as i128 * 15_000_000),
                    "cheap" => Some(input as i128 + output as i128 * 3),
                    _ => None,
                }
            };
            prop_assert_eq!(stored.map(i128::from), expected, "{}", model);
            expected_total += expected.unwrap_or(0);
        }
        let total: i64 = conn.query_row("SELECT coalesce(sum(cost_picousd), 0) FROM runs", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(total as i128, expected_total);
    }
}

#[test]
fn builtin_pricing_opens_and_prices() {
    let p = Pipeline::open_in_memory(Pricing::builtin()).unwrap();
    p.record_llm_call(LlmCall {
        model: "openai/gpt-4o-mini-2024-07-18".into(),
        ..llm("c", "r", 1_000_000, 0)
    })
    .unwrap();
    assert_eq!(p.run("r").unwrap().unwrap().cost_usd, 0.15);
}

#[test]
fn totals_beyond_64_bits_are_a_typed_error_not_a_clamp() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    let half = i64::MAX / 2 + 1;
    let big = |id: &str, run: &str| {
        Record::Llm(LlmCall {
            model: "not-priced".into(),
            ..llm(id, run, half, 0)
        })
    };
    let before = snapshot(&path);
    // Each run alone is within limits; the model's histogram total is not.
    match p.record_batch([big("a", "r1"), big("b", "r2")]) {
        Err(Error::InvalidValue { field: "model", .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(before, snapshot(&path));
}
