//! Reliability: concurrent writers and readers, SIGKILL mid-write, storage faults, a catalogue
//! of hostile inputs, fuzzed imports and price tables, SQL in every string.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Cursor};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentobs::{
    DashboardFilter, Error, ImportOptions, LlmCall, Pipeline, Pricing, Record, ToolCall,
};
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::json;

use crate::util::{assert_rollups_consistent, llm, open, pricing, snapshot, temp_db, tool};

fn child(test: &str, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Writes `count` records (ids prefixed `prefix`), alternating single records and batches of 10.
fn write_records(p: &Pipeline, prefix: &str, count: usize) {
    let mut i = 0;
    while i < count {
        let run = format!("run-{}", i % 37);
        if i % 20 < 10 {
            let r = if i % 2 == 0 {
                p.record_llm_call(llm(&format!("{prefix}-{i}"), &run, 100, 10))
                    .map(|_| ())
            } else {
                p.record_tool_call(tool(&format!("{prefix}-{i}"), &run, i % 7 != 0))
                    .map(|_| ())
            };
            r.unwrap_or_else(|e| panic!("{prefix}-{i}: {e}"));
            i += 1;
        } else {
            let n = 10.min(count - i);
            let batch: Vec<Record> = (i..i + n)
                .map(|j| Record::Llm(llm(&format!("{prefix}-{j}"), &run, 50, 5)))
                .collect();
            p.record_batch(batch)
                .unwrap_or_else(|e| panic!("{prefix}-{i}: {e}"));
            i += n;
        }
    }
}

/// Child side of `threads_and_processes_write_together`.
#[test]
fn child_concurrent_writer() {
    let (Ok(path), Ok(prefix), Ok(count)) = (
        std::env::var("AGENTOBS_RELIABILITY_DB"),
        std::env::var("AGENTOBS_RELIABILITY_PREFIX"),
        std::env::var("AGENTOBS_RELIABILITY_COUNT"),
    ) else {
        return;
    };
    let p = Pipeline::open(&path, pricing()).unwrap();
    write_records(&p, &prefix, count.parse().unwrap());
}

#[test]
fn threads_and_processes_write_together_while_a_reader_checks_snapshots() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 3_000;
    const PROCESSES: usize = 4;
    const PER_PROCESS: usize = 6_500; // 8 × 3,000 + 4 × 6,500 = 50,000
    let (_d, path) = temp_db();
    let p = open(&path);
    let stop = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let conn = Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let observer = Pipeline::open(&path, pricing()).unwrap();
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads < 3 {
                let d = observer.dashboard(&DashboardFilter::default()).unwrap();
                assert_eq!(
                    d.by_model.iter().map(|m| m.calls).sum::<i64>(),
                    d.llm_calls,
                    "torn read"
                );
                assert_eq!(
                    d.by_tool.iter().map(|t| t.calls).sum::<i64>(),
                    d.tool_calls,
                    "torn read"
                );
                // One SQL statement is one snapshot: rollups against rows, mid-write.
                assert_rollups_consistent(&conn);
                reads += 1;
            }
            reads
        });
        let children: Vec<_> = (0..PROCESSES)
            .map(|k| {
                child(
                    "reliability::child_concurrent_writer",
                    &[
                        (
                            "AGENTOBS_RELIABILITY_DB",
                            path.to_str().unwrap().to_string(),
                        ),
                        ("AGENTOBS_RELIABILITY_PREFIX", format!("proc{k}")),
                        ("AGENTOBS_RELIABILITY_COUNT", PER_PROCESS.to_string()),
                    ],
                )
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
            })
            .collect();
        std::thread::scope(|t| {
            for k in 0..THREADS {
                let p = &p;
                t.spawn(move || write_records(p, &format!("thread{k}"), PER_THREAD));
            }
        });
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a writer process failed");
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(reads >= 3);
    let conn = Connection::open(&path).unwrap();
    assert_rollups_consistent(&conn);
    let mut ids: HashSet<String> = HashSet::new();
    for table in ["llm_calls", "tool_calls"] {
        let mut stmt = conn
            .prepare(&format!("SELECT call_id FROM {table}"))
            .unwrap();
        for id in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            assert!(ids.insert(id.unwrap()), "a record is present twice");
        }
    }
    assert_eq!(ids.len(), THREADS * PER_THREAD + PROCESSES * PER_PROCESS);
    for k in 0..THREADS {
        assert!(ids.contains(&format!("thread{k}-{}", PER_THREAD - 1)));
    }
    for k in 0..PROCESSES {
        assert!(ids.contains(&format!("proc{k}-{}", PER_PROCESS - 1)));
    }
}

const BATCH: usize = 50;

/// Child side of `sigkill_mid_write_loses_no_committed_batch`: writes batches forever from
/// AGENTOBS_CRASH_FROM on, printing each batch number once it has returned.
#[test]
fn child_crash_writer() {
    let (Ok(path), Ok(from)) = (
        std::env::var("AGENTOBS_CRASH_DB"),
        std::env::var("AGENTOBS_CRASH_FROM"),
    ) else {
        return;
    };
    let p = Pipeline::open(&path, pricing()).unwrap();
    let mut b: usize = from.parse().unwrap();
    loop {
        let batch: Vec<Record> = (0..BATCH)
            .map(|i| {
                let call = LlmCall {
                    error: Some("x".repeat(i * 40)),
                    ..llm(&format!("b{b}-{i}"), &format!("batch-{b}"), 1000, 100)
                };
                Record::Llm(call)
            })
            .collect();
        p.record_batch(batch).unwrap();
        println!("COMMITTED {b}");
        b += 1;
    }
}

#[test]
fn sigkill_mid_write_loses_no_committed_batch() {
    let (_d, path) = temp_db();
    drop(open(&path));
    let mut next = 0usize;
    let mut confirmed: Vec<usize> = Vec::new();
    let mut seed = 0x9E37_79B9_u64;
    for kill in 0..20 {
        let mut c = child(
            "reliability::child_crash_writer",
            &[
                ("AGENTOBS_CRASH_DB", path.to_str().unwrap().to_string()),
                ("AGENTOBS_CRASH_FROM", next.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let stdout = c.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.split("COMMITTED ")
                        .nth(1)
                        .and_then(|n| n.trim().parse::<usize>().ok())
                })
                .collect::<Vec<_>>()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let got = lines.join().unwrap();
        confirmed.extend(&got);
        let conn = Connection::open(&path).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "after kill {kill}");
        // Every batch is whole or absent; every confirmed batch is whole.
        let mut stmt = conn
            .prepare("SELECT run_id, count(*) FROM llm_calls GROUP BY run_id")
            .unwrap();
        let counts: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (run, n) in &counts {
            assert_eq!(
                *n as usize, BATCH,
                "{run} is present in part after kill {kill}"
            );
        }
        let present: HashSet<String> = counts.into_iter().map(|(r, _)| r).collect();
        for b in &confirmed {
            assert!(
                present.contains(&format!("batch-{b}")),
                "confirmed batch {b} lost after kill {kill}"
            );
        }
        assert_rollups_consistent(&conn);
        next = present
            .len()
            .max(confirmed.iter().max().map_or(0, |m| m + 1))
            + 1000 * (kill + 1);
    }
    assert!(
        confirmed.len() >= 20,
        "the child committed too little to prove anything: {}",
        confirmed.len()
    );
}

#[test]
fn disk_full_is_a_typed_error_and_the_file_recovers() {
    let (_d, path) = temp_db();
    drop(open(&path));
    let small = Pipeline::options()
        .max_size_bytes(1 << 20)
        .open(&path, pricing())
        .unwrap();
    let mut hit = None;
    for b in 0..200 {
        let batch: Vec<Record> = (0..50)
            .map(|i| {
                Record::Llm(LlmCall {
                    error: Some("e".repeat(2000)),
                    ..llm(&format!("c{b}-{i}"), "r", 10, 10)
                })
            })
            .collect();
        match small.record_batch(batch) {
            Ok(_) => {}
            Err(e) => {
                hit = Some((b, e));
                break;
            }
        }
    }
    let (b, e) = hit.expect("the size cap was reached");
    assert!(matches!(e, Error::DiskFull), "{e:?}");
    let before = snapshot(&path);
    assert!(matches!(
        small.record_llm_call(LlmCall {
            error: Some("e".repeat(2 << 20)),
            ..llm("big", "r", 1, 1)
        }),
        Err(Error::DiskFull)
    ));
    assert_eq!(
        before,
        snapshot(&path),
        "a failed write leaves nothing behind"
    );
    drop(small);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    assert_rollups_consistent(&conn);
    // Space returns: the same file takes writes again.
    let p = open(&path);
    p.record_llm_call(llm("after", "r", 1, 1)).unwrap();
    assert_eq!(p.run("r").unwrap().unwrap().llm_calls as usize, b * 50 + 1);
}

#[test]
fn a_read_only_file_serves_reads_and_refuses_writes() {
    let (_d, path) = temp_db();
    let p = open(&path);
    p.record_llm_call(llm("c1", "r1", 10, 10)).unwrap();
    p.end_run("r1", "success").unwrap();
    drop(p);
    let bytes = std::fs::read(&path).unwrap();
    let ro = Pipeline::options()
        .read_only(true)
        .open(&path, pricing())
        .unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.dashboard(&DashboardFilter::default()).unwrap().runs, 1);
    assert!(ro.export_jsonl("r1").unwrap().contains("c1"));
    assert!(matches!(
        ro.record_llm_call(llm("c2", "r1", 1, 1)),
        Err(Error::ReadOnly(_))
    ));
    assert!(matches!(
        ro.set_alert("tokens", 1.0),
        Err(Error::ReadOnly(_))
    ));
    drop(ro);
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "a read-only open modified the file"
    );
    // File permissions: without write permission the file opens read-only by itself (unless
    // this process may write anything, as root may).
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms.clone()).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&path).is_err() {
        let p = Pipeline::open(&path, pricing()).unwrap();
        assert!(p.is_read_only());
        assert!(matches!(
            p.record_llm_call(llm("c3", "r9", 1, 1)),
            Err(Error::ReadOnly(_))
        ));
    } else {
        eprintln!("note: running with privileges that ignore file permissions; read_only(true) covered above");
    }
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
}

#[test]
fn truncated_and_corrupt_files_give_typed_errors_and_are_not_overwritten() {
    let (dir, path) = temp_db();
    let p = open(&path);
    agentobs::simulate::simulate(
        &p,
        &agentobs::simulate::SimulationOptions::new(40, 1),
        |_| {},
    )
    .unwrap();
    drop(p);
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .unwrap();
    }
    let whole = std::fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.db", whole[..whole.len() / 2].to_vec()),
        ("corrupt.db", {
            let mut b = whole.clone();
            let page = 4096 * 5;
            for x in &mut b[page..page + 4096] {
                *x = 0xA5;
            }
            b
        }),
        ("header.db", {
            let mut b = whole.clone();
            b[..16].copy_from_slice(b"not a database!!");
            b
        }),
    ];
    for (name, bytes) in cases {
        let f = dir.path().join(name);
        std::fs::write(&f, &bytes).unwrap();
        let outcome = Pipeline::open(&f, pricing()).and_then(|p| {
            p.dashboard(&DashboardFilter::default())?;
            p.export_all_jsonl_to(None, None, &mut std::io::sink())?;
            p.record_llm_call(llm("new", "new-run", 1, 1)).map(|_| ())
        });
        match outcome {
            Err(Error::NotADatabase { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
        assert!(std::fs::read(&f).unwrap() == bytes, "{name} was modified");
    }
}

/// Runs `case` and checks its outcome; on a rejection, the database must be unchanged.
fn expect(
    path: &Path,
    name: &str,
    outcome: agentobs::Result<()>,
    accepted: bool,
    check: impl Fn(&Error) -> bool,
) -> usize {
    match (outcome, accepted) {
        (Ok(()), true) => {}
        (Err(e), false) => assert!(check(&e), "{name}: unexpected error {e:?}"),
        (Ok(()), false) => panic!("{name}: accepted, expected a rejection"),
        (Err(e), true) => panic!("{name}: rejected, expected acceptance: {e}"),
    }
    let _ = path;
    1
}

fn invalid(field: &'static str) -> impl Fn(&Error) -> bool {
    move |e| matches!(e, Error::InvalidValue { field: f, value, .. } if *f == field && !value.is_empty())
}

fn jsonl_line(p: &Pipeline, line: &[u8]) -> agentobs::Result<()> {
    let mut reasons = Vec::new();
    let r = p.import_jsonl(
        Cursor::new(line),
        &ImportOptions::default(),
        |n, e| reasons.push(format!("line {n}: {e}")),
        |_| {},
    )?;
    if r.rejected > 0 {
        return Err(Error::Jsonl {
            line: 1,
            reason: reasons.join("; "),
        });
    }
    Ok(())
}

#[test]
fn hostile_input_catalogue() {
    // Deep recursion in a test thread's default 2 MiB stack is the test's own risk, not the
    // library's: give the catalogue room to build and drop 10,000-deep values.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(hostile_input_catalogue_body)
        .unwrap()
        .join()
        .unwrap();
}

/// One API case of the catalogue: a name, the call, and the check its error must pass.
type Case<'a> = (
    &'static str,
    Box<dyn Fn(&Pipeline) -> agentobs::Result<()> + 'a>,
    Box<dyn Fn(&Error) -> bool + 'a>,
);

fn hostile_input_catalogue_body() {
    let (_d, path) = temp_db();
    let p = open(&path);
    p.start_run("ended", json!({})).unwrap();
    p.record_llm_call(llm("existing", "ended", 10, 10)).unwrap();
    p.end_run("ended", "success").unwrap();
    let mut n = 0;
    let reject = |p: &Pipeline,
                  name: &str,
                  f: &dyn Fn(&Pipeline) -> agentobs::Result<()>,
                  check: &dyn Fn(&Error) -> bool| {
        let before = snapshot(&path);
        let r = f(p);
        let n = expect(&path, name, r, false, check);
        assert_eq!(
            before,
            snapshot(&path),
            "{name}: database changed after a rejection"
        );
        n
    };
    let base = || llm("h", "hostile-run", 10, 10);
    let deep = {
        let mut v = json!({});
        for _ in 0..10_000 {
            v = json!({ "a": v });
        }
        v
    };
    let api: Vec<Case<'_>> = vec![
        (
            "NaN latency",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    latency_ms: f64::NAN,
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("latency_ms")),
        ),
        (
            "+inf latency",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    latency_ms: f64::INFINITY,
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("latency_ms")),
        ),
        (
            "-inf latency",
            Box::new(|p| {
                p.record_tool_call(ToolCall {
                    latency_ms: f64::NEG_INFINITY,
                    ..tool("h", "x", true)
                })
                .map(|_| ())
            }),
            Box::new(invalid("latency_ms")),
        ),
        (
            "negative latency",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    latency_ms: -0.001,
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("latency_ms")),
        ),
        (
            "negative input tokens",
            Box::new(|p| p.record_llm_call(llm("h", "x", -1, 0)).map(|_| ())),
            Box::new(invalid("input_tokens")),
        ),
        (
            "i64::MIN output tokens",
            Box::new(|p| p.record_llm_call(llm("h", "x", 0, i64::MIN)).map(|_| ())),
            Box::new(invalid("output_tokens")),
        ),
        (
            "cached > input",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    cached_input_tokens: Some(11),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("cached_input_tokens")),
        ),
        (
            "cache parts overflow i64",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    cached_input_tokens: Some(i64::MAX),
                    cache_write_tokens: Some(i64::MAX),
                    ..llm("h", "x", i64::MAX, 0)
                })
                .map(|_| ())
            }),
            Box::new(invalid("cached_input_tokens")),
        ),
        (
            "reasoning > output",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    reasoning_tokens: Some(11),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("reasoning_tokens")),
        ),
        (
            "cost beyond per-call limit (i64::MAX tokens)",
            Box::new(|p| {
                p.record_llm_call(llm("h", "x", i64::MAX, i64::MAX))
                    .map(|_| ())
            }),
            Box::new(invalid("cost_usd")),
        ),
        (
            "NaN cost",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    cost_usd: Some(f64::NAN),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("cost_usd")),
        ),
        (
            "negative cost",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    cost_usd: Some(-1.0),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("cost_usd")),
        ),
        (
            "huge cost",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    cost_usd: Some(1e300),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("cost_usd")),
        ),
        (
            "inf timestamp",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    timestamp: Some(f64::INFINITY),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("timestamp")),
        ),
        (
            "empty call id",
            Box::new(|p| p.record_llm_call(llm("", "x", 1, 1)).map(|_| ())),
            Box::new(invalid("call_id")),
        ),
        (
            "empty run id",
            Box::new(|p| p.record_tool_call(tool("h", "", true)).map(|_| ())),
            Box::new(invalid("run_id")),
        ),
        (
            "empty model",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    model: String::new(),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("model")),
        ),
        (
            "empty tool name",
            Box::new(|p| {
                p.record_tool_call(ToolCall {
                    tool_name: String::new(),
                    ..tool("h", "x", true)
                })
                .map(|_| ())
            }),
            Box::new(invalid("tool_name")),
        ),
        (
            "array metadata",
            Box::new(|p| {
                p.record_llm_call(LlmCall {
                    metadata: Some(json!([1])),
                    ..base()
                })
                .map(|_| ())
            }),
            Box::new(invalid("metadata")),
        ),
        (
            "metadata 10,000 deep",
            Box::new(move |p| p.start_run("deep", deep.clone())),
            Box::new(invalid("metadata")),
        ),
        (
            "unknown run end",
            Box::new(|p| p.end_run("nobody", "success").map(|_| ())),
            Box::new(|e| matches!(e, Error::UnknownRun { .. })),
        ),
        (
            "record into ended run",
            Box::new(|p| p.record_llm_call(llm("new", "ended", 1, 1)).map(|_| ())),
            Box::new(|e| matches!(e, Error::RunEnded { .. })),
        ),
        (
            "second start",
            Box::new(|p| p.start_run("ended", json!({}))),
            Box::new(|e| matches!(e, Error::RunExists { .. })),
        ),
        (
            "conflicting duplicate id",
            Box::new(|p| {
                p.record_llm_call(llm("existing", "ended", 11, 10))
                    .map(|_| ())
            }),
            Box::new(|e| matches!(e, Error::ConflictingDuplicate { .. })),
        ),
        (
            "empty final status",
            Box::new(|p| p.end_run("ended", "").map(|_| ())),
            Box::new(invalid("status")),
        ),
        (
            "NaN threshold",
            Box::new(|p| p.set_alert("cost_usd", f64::NAN).map(|_| ())),
            Box::new(invalid("threshold")),
        ),
        (
            "unknown metric",
            Box::new(|p| p.set_alert("cost; DROP TABLE runs", 1.0).map(|_| ())),
            Box::new(|e| matches!(e, Error::UnknownMetric { .. })),
        ),
    ];
    for (name, f, check) in &api {
        n += reject(&p, name, f.as_ref(), check.as_ref());
    }

    // Accepted as documented: long strings, NUL bytes, SQL in every string are stored literally.
    let ten_mb = "e".repeat(10 << 20);
    let evil = "'; DROP TABLE runs; --";
    p.record_llm_call(LlmCall {
        error: Some(ten_mb.clone()),
        ..llm("big", "big-run", 1, 1)
    })
    .unwrap();
    p.record_llm_call(LlmCall {
        model: format!("nul\0{evil}"),
        error: Some("a\0b".into()),
        metadata: Some(json!({ evil: evil })),
        ..llm(&format!("nul\0{evil}"), evil, 1, 1)
    })
    .unwrap();
    p.record_tool_call(ToolCall {
        tool_name: evil.into(),
        ..tool(evil, evil, false)
    })
    .unwrap();
    n += 3;
    let export = p.export_jsonl(evil).unwrap();
    assert!(export.contains("nul\\u0000"), "NUL survives, escaped");
    let big = p.export_jsonl("big-run").unwrap();
    assert!(big.contains(&ten_mb));
    let conn = Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'runs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
    let stored: String = conn
        .query_row(
            "SELECT model FROM llm_calls WHERE run_id = ?1",
            [evil],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, format!("nul\0{evil}"));

    // The pricing loader.
    let bad_tables: Vec<(&str, &str)> = vec![
        ("string price", r#"{"m": {"input": "NaN", "output": 1}}"#),
        ("negative price", r#"{"m": {"input": -1, "output": 1}}"#),
        (
            "out-of-range number",
            r#"{"m": {"input": 1e400, "output": 1}}"#,
        ),
        ("missing output", r#"{"m": {"input": 1}}"#),
        (
            "typo key",
            r#"{"m": {"input": 1, "ouput": 1, "output": 1}}"#,
        ),
        (
            "tiers out of order",
            r#"{"m": {"input": 1, "output": 1, "tiers": [{"above_input_tokens": 9}, {"above_input_tokens": 1}]}}"#,
        ),
        ("not an object", r#"[1]"#),
        (
            "lone surrogate in a name",
            r#"{"\ud800": {"input": 1, "output": 1}}"#,
        ),
        ("truncated", r#"{"m": {"input": 1, "out"#),
        (
            "history out of order",
            r#"{"m": [{"since": "2025-01-01", "input": 1, "output": 1}, {"since": "2024-01-01", "input": 1, "output": 1}]}"#,
        ),
    ];
    for (name, json) in &bad_tables {
        assert!(
            matches!(Pricing::from_json_str(json), Err(Error::Pricing { .. })),
            "{name}"
        );
        n += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let invalid_utf8 = dir.path().join("prices.json");
    std::fs::write(&invalid_utf8, b"{\"m\xff\": {\"input\": 1, \"output\": 1}}").unwrap();
    assert!(
        matches!(Pricing::from_path(&invalid_utf8), Err(Error::Io(_))),
        "invalid UTF-8 price file"
    );
    // Duplicate keys: the last value wins, as in most JSON readers (documented).
    let dup = Pricing::from_json_str(r#"{"m": {"input": 1, "input": 2, "output": 1}}"#).unwrap();
    assert_eq!(dup.compute_cost("m", 1_000_000, 0).unwrap(), 2.0);
    n += 2;

    // The JSONL importer: each line is rejected alone, and the database is unchanged.
    let tool_line = |extra: &str| {
        format!(
            r#"{{"type":"tool_call","call_id":"j","run_id":"jr","tool_name":"t","latency_ms":1,"success":true,"timestamp":1{extra}}}"#
        )
    };
    let mut deep_line = String::new();
    for _ in 0..10_000 {
        deep_line.push_str("{\"a\":");
    }
    let lines: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", b"{\"type\":\"tool_call\",\"call_id\":\"\xff\xfe\"}\n".to_vec()),
        ("lone surrogate", tool_line(r#","error":"\udc00""#).into_bytes()),
        ("duplicate key", br#"{"type":"run","run_id":"a","run_id":"b","started_at":1}"#.to_vec()),
        ("metadata 10,000 deep", format!(r#"{{"type":"run","run_id":"d","started_at":1,"metadata":{deep_line}"#).into_bytes()),
        ("tokens beyond i64", br#"{"type":"llm_call","call_id":"t","run_id":"r","model":"gpt-4o","input_tokens":18446744073709551616,"output_tokens":1,"latency_ms":1,"timestamp":1}"#.to_vec()),
        ("float tokens", br#"{"type":"llm_call","call_id":"t","run_id":"r","model":"gpt-4o","input_tokens":1.5,"output_tokens":1,"latency_ms":1,"timestamp":1}"#.to_vec()),
        ("wrong type", tool_line(r#","step":"first""#).into_bytes()),
        ("unknown field", tool_line(r#","colour":"red""#).into_bytes()),
        ("empty id", br#"{"type":"tool_call","call_id":"","run_id":"jr","tool_name":"t","latency_ms":1,"success":true,"timestamp":1}"#.to_vec()),
        ("unknown alert metric", br#"{"type":"alert","run_id":"x","metric":"mood","value":1,"threshold":0,"call_id":"c","fired_at":1}"#.to_vec()),
        ("bad time text", br#"{"type":"run","run_id":"t","started_at":"yesterday"}"#.to_vec()),
        ("status without end", br#"{"type":"run","run_id":"t","status":"success","started_at":1}"#.to_vec()),
        ("truncated line", br#"{"type":"run","run_id":"t","#.to_vec()),
        ("NaN as text", tool_line(r#","latency_ms":NaN"#).into_bytes()),
    ];
    for (name, line) in &lines {
        let before = snapshot(&path);
        match jsonl_line(&p, line) {
            Err(Error::Jsonl { reason, .. }) => {
                assert!(reason.starts_with("line 1:"), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(before, snapshot(&path), "{name}: database changed");
        n += 1;
    }
    // Accepted: BOM, CRLF, and a record with a 100 MB string on one line; a 100 MB line of
    // junk is rejected without being held whole in memory.
    jsonl_line(&p, format!("\u{feff}{}\r\n", tool_line("")).as_bytes()).unwrap();
    let huge = format!(
        r#"{{"type":"tool_call","call_id":"huge","run_id":"jr","tool_name":"t","latency_ms":1,"success":false,"error":"{}","timestamp":1}}"#,
        "z".repeat(60 << 20)
    );
    jsonl_line(&p, huge.as_bytes()).unwrap();
    let junk = vec![b'x'; 100 << 20];
    match jsonl_line(&p, &junk) {
        Err(Error::Jsonl { reason, .. }) => {
            assert!(reason.contains("longer than the limit"), "{reason}")
        }
        other => panic!("100 MB line: {other:?}"),
    }
    n += 3;
    assert!(n >= 40, "only {n} hostile inputs");
    eprintln!("hostile inputs tried: {n}");
    assert_rollups_consistent(&Connection::open(&path).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_importer_or_the_price_loader(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let p = Pipeline::open_in_memory(pricing()).unwrap();
        let _ = p.import_jsonl(Cursor::new(&bytes), &ImportOptions::default(), |_, _| {}, |_| {});
        let _ = p.import_jsonl(Cursor::new(&bytes), &ImportOptions { strict: true, ..Default::default() }, |_, _| {}, |_| {});
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = Pricing::from_json_str(text);
        }
        let _ = p.dashboard(&DashboardFilter::default()).unwrap();
    }

    #[test]
    fn mutated_valid_lines_are_applied_whole_or_not_at_all(
        edits in proptest::collection::vec((0usize..400, any::<u8>(), 0u8..3), 1..6)
    ) {
        let (_d, path) = temp_db();
        let a = open(&path);
        a.record_llm_call(LlmCall { metadata: Some(json!({"k": [1, 2]})), ..llm("c1", "r1", 1000, 10) }).unwrap();
        a.record_tool_call(tool("t1", "r1", false)).unwrap();
        a.end_run("r1", "success").unwrap();
        let mut text = a.export_jsonl("r1").unwrap().into_bytes();
        for (pos, byte, op) in edits {
            let pos = pos % (text.len() + 1);
            match op {
                0 if pos < text.len() => text[pos] = byte,
                1 => text.insert(pos, byte),
                _ => { text.truncate(pos.max(1)); }
            }
        }
        let (_d2, dst) = temp_db();
        let b = open(&dst);
        let report = b.import_jsonl(Cursor::new(&text), &ImportOptions::default(), |_, _| {}, |_| {}).unwrap();
        prop_assert!(report.rejected <= report.lines);
        assert_rollups_consistent(&Connection::open(&dst).unwrap());
        let before = snapshot(&dst);
        let strict = b.import_jsonl(Cursor::new(&text), &ImportOptions { strict: true, ..Default::default() }, |_, _| {}, |_| {}).unwrap();
        if strict.rejected > 0 {
            prop_assert_eq!(before, snapshot(&dst));
        }
        let conn = Connection::open(&dst).unwrap();
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(ok, "ok");
    }
}

/// The JSONL of 400 ended runs of 20 calls each (8,400 lines), in export order.
fn import_source() -> String {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    for r in 0..400 {
        let run_id = format!("run-{r:03}");
        let t0 = 1_750_000_000.0 + r as f64 * 10.0;
        let mut batch = vec![Record::StartRun {
            run_id: run_id.clone(),
            metadata: json!({"n": r}),
            started_at: Some(t0),
        }];
        for i in 0..20 {
            batch.push(if i % 2 == 0 {
                Record::Llm(LlmCall {
                    step: i,
                    timestamp: Some(t0 + i as f64 * 0.1),
                    ..llm(&format!("{run_id}-{i}"), &run_id, 100 + i, 10)
                })
            } else {
                Record::Tool(ToolCall {
                    step: i,
                    timestamp: Some(t0 + i as f64 * 0.1),
                    ..tool(&format!("{run_id}-{i}"), &run_id, i % 7 != 0)
                })
            });
        }
        batch.push(Record::EndRun {
            run_id,
            status: "success".into(),
            ended_at: Some(t0 + 5.0),
        });
        p.record_batch(batch).unwrap();
    }
    let mut out = Vec::new();
    p.export_all_jsonl_to(None, None, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Child side of `sigkill_mid_import_then_reimport`: imports AGENTOBS_IMPORT_FILE into
/// AGENTOBS_IMPORT_DB in batches of 100 lines.
#[test]
fn child_importer() {
    let (Ok(db), Ok(file)) = (
        std::env::var("AGENTOBS_IMPORT_DB"),
        std::env::var("AGENTOBS_IMPORT_FILE"),
    ) else {
        return;
    };
    let p = Pipeline::open(&db, pricing()).unwrap();
    let options = ImportOptions {
        batch_lines: 100,
        ..ImportOptions::default()
    };
    let input = BufReader::new(std::fs::File::open(file).unwrap());
    p.import_jsonl(input, &options, |l, e| panic!("{l}: {e}"), |_| {})
        .unwrap();
}

/// An import killed at random moments leaves a consistent file holding exactly a prefix of the
/// input (whole batches, in order), and importing the same file again completes it: the result
/// exports byte for byte as the source.
#[test]
fn sigkill_mid_import_then_reimport() {
    let text = import_source();
    let (dir, path) = temp_db();
    let file = dir.path().join("source.jsonl");
    std::fs::write(&file, &text).unwrap();
    // Call ids in file order: what a prefix of the input holds.
    let order: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.get("call_id").and_then(|c| c.as_str()).map(String::from)
        })
        .collect();
    let mut seed = 0x2545_F491_u64;
    let mut prefixes = Vec::new();
    for kill in 0..5 {
        let mut c = child(
            "reliability::child_importer",
            &[
                ("AGENTOBS_IMPORT_DB", path.to_str().unwrap().to_string()),
                ("AGENTOBS_IMPORT_FILE", file.to_str().unwrap().to_string()),
            ],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 500));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let conn = Connection::open(&path).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "after kill {kill}");
        assert_rollups_consistent(&conn);
        let present: HashSet<String> = conn
            .prepare("SELECT call_id FROM llm_calls UNION ALL SELECT call_id FROM tool_calls")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let prefix: HashSet<String> = order[..present.len()].iter().cloned().collect();
        assert_eq!(
            present, prefix,
            "after kill {kill}: not a prefix of the input"
        );
        prefixes.push(present.len());
    }
    let p = open(&path);
    let report = p
        .import_jsonl(
            Cursor::new(text.as_bytes()),
            &ImportOptions::default(),
            |l, e| panic!("{l}: {e}"),
            |_| {},
        )
        .unwrap();
    assert_eq!(report.rejected, 0);
    let mut out = Vec::new();
    p.export_all_jsonl_to(None, None, &mut out).unwrap();
    assert!(
        out == text.as_bytes(),
        "the completed import differs from the source"
    );
    assert!(
        prefixes.iter().any(|&n| 0 < n && n < order.len()),
        "no kill landed mid-import: {prefixes:?}"
    );
}
