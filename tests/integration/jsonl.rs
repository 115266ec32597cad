//! JSONL: byte-identical round trips over hostile strings, every kind of bad line with its line
//! number, strict imports that change nothing, idempotent re-imports.

use std::io::Cursor;

use agentobs::{Error, ImportOptions, ImportReport, LlmCall, Pipeline, Record, ToolCall};
use proptest::prelude::*;
use serde_json::json;

use crate::util::{llm, open, pricing, snapshot, temp_db, tool};

fn import(p: &Pipeline, text: &str, strict: bool) -> (ImportReport, Vec<(u64, String)>) {
    let mut rejected = Vec::new();
    let options = ImportOptions {
        strict,
        batch_lines: 3,
        ..ImportOptions::default()
    };
    let report = p
        .import_jsonl(
            Cursor::new(text.as_bytes()),
            &options,
            |line, e| rejected.push((line, e.to_string())),
            |_| {},
        )
        .unwrap();
    (report, rejected)
}

fn export_all(p: &Pipeline) -> String {
    let mut out = Vec::new();
    p.export_all_jsonl_to(None, None, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("line one\nline two\r\nthree".to_string()),
        Just("tab\there \"quoted\" back\\slash".to_string()),
        Just("nul\u{0}byte and \u{1b}[31mescape".to_string()),
        Just("lone \u{2028} separator \u{2029}".to_string()),
        Just("RTL \u{202e}txet and עברית".to_string()),
        Just("emoji 🦀🔥 and 中文".to_string()),
        Just("x".repeat(100_000)),
        // Any other non-empty text (ids and names cannot be empty).
        ".+",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn export_import_export_is_byte_identical(
        strings in proptest::collection::vec(hostile(), 1..6),
        ended in any::<bool>(),
        given in proptest::option::of(0.0f64..10.0),
        latency in 0.0f64..1e6,
    ) {
        let a = Pipeline::open_in_memory(pricing()).unwrap();
        let s = |i: usize| strings[i % strings.len()].clone();
        a.start_run_at(&s(0), json!({ s(1): s(2), "n": 1.5, "nested": {"k": [s(3)]} }), 1_700_000_000.25).unwrap();
        a.set_alert("llm_calls", 0.0).unwrap();
        a.record_batch([
            Record::Llm(LlmCall {
                model: s(1),
                error: Some(s(2)),
                cost_usd: given,
                latency_ms: latency,
                metadata: Some(json!({ "why": s(3) })),
                cached_input_tokens: Some(3),
                ..llm("c1", &s(0), 10, 5)
            }),
            Record::Llm(LlmCall { step: 2, ..llm("c2", &s(0), 1000, 10) }),
            Record::Tool(ToolCall { tool_name: s(4), error: Some(s(0)), step: 1, ..tool(&s(3), &s(0), false) }),
        ]).unwrap();
        if ended {
            a.end_run_at(&s(0), &s(2), 1_700_000_100.5).unwrap();
        }
        let first = export_all(&a);
        // Every '\n'-separated line is one JSON object: no string spilled onto a second line.
        prop_assert!(first.ends_with('\n'));
        for line in first.trim_end_matches('\n').split('\n') {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            prop_assert!(v.is_object() && v.get("type").is_some());
        }
        let b = Pipeline::open_in_memory(pricing()).unwrap();
        let (report, rejected) = import(&b, &first, false);
        prop_assert!(rejected.is_empty(), "{:?}", rejected);
        prop_assert_eq!(report.alerts, 1);
        prop_assert!(b.alert_rules().unwrap().is_empty(), "rules are not data; no rule came along");
        let second = export_all(&b);
        prop_assert_eq!(&first, &second);
        // The rollups were rebuilt exactly.
        let (ra, rb) = (a.run(&s(0)).unwrap().unwrap(), b.run(&s(0)).unwrap().unwrap());
        prop_assert_eq!(ra.cost_picousd, rb.cost_picousd);
        prop_assert_eq!((ra.llm_calls, ra.tool_calls, ra.tool_errors), (rb.llm_calls, rb.tool_calls, rb.tool_errors));
    }
}

#[test]
fn records_may_come_before_their_run_line_and_in_any_order() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    let text = [
        r#"{"type":"alert","run_id":"r1","metric":"cost_usd","value":2.5,"threshold":1.0,"call_id":"c1","fired_at":"2024-06-01T00:00:05Z"}"#,
        r#"{"type":"tool_call","call_id":"t1","run_id":"r1","step":1,"tool_name":"search","latency_ms":12.5,"success":false,"error":"boom","timestamp":1717200001}"#,
        r#"{"type":"llm_call","call_id":"c1","run_id":"r1","step":0,"model":"gpt-4o","input_tokens":1000000,"output_tokens":0,"latency_ms":900,"cost_usd":null,"timestamp":"2024-06-01T00:00:00Z","cached":false,"error":null,"metadata":null}"#,
        r#"{"type":"run","run_id":"r1","metadata":{"agent":"a"},"status":"success","started_at":"2024-06-01","ended_at":1717200010}"#,
        r#"{"type":"llm_call","call_id":"c2","run_id":"r1","step":2,"model":"gpt-4o","input_tokens":0,"output_tokens":0,"latency_ms":1,"timestamp":1717200002}"#,
    ]
    .join("\n");
    let (report, rejected) = import(&p, &text, false);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(
        (
            report.runs,
            report.llm_calls,
            report.tool_calls,
            report.alerts
        ),
        (1, 2, 1, 1)
    );
    let run = p.run("r1").unwrap().unwrap();
    assert_eq!(run.status, "success");
    assert_eq!(run.metadata, json!({"agent": "a"}));
    assert_eq!(run.started_at, 1_717_200_000.0);
    assert_eq!(run.ended_at, Some(1_717_200_010.0));
    assert_eq!(run.duration_ms, Some(10_000.0));
    assert_eq!(
        run.cost_usd, 2.5,
        "priced from the table (no cost_source in the line)"
    );
    assert_eq!(run.alerts.len(), 1);
}

#[test]
fn bad_lines_are_reported_with_line_numbers_and_the_rest_applied() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.record_tool_call(tool("t-old", "r0", true)).unwrap();
    let good_run =
        r#"{"type":"run","run_id":"r1","metadata":{},"status":"running","started_at":1}"#;
    let lines = [
        good_run,                           // 1
        "{not json",                        // 2 invalid JSON
        r#"{"type":"span","run_id":"r1"}"#, // 3 unknown type
        r#"{"run_id":"r1"}"#,               // 4 missing type
        r#"{"type":"tool_call","call_id":"t1","run_id":"r1","tool_name":"x","latency_ms":1,"timestamp":1}"#, // 5 missing success
        r#"{"type":"tool_call","call_id":"t1","run_id":"r1","tool_name":"x","latency_ms":"1","success":true,"timestamp":1}"#, // 6 mistyped
        r#"{"type":"tool_call","call_id":"t1","run_id":"r1","tool_name":"x","latency_ms":-1,"success":true,"timestamp":1}"#, // 7 invalid value
        r#"{"type":"tool_call","call_id":"t-old","run_id":"r0","tool_name":"other","latency_ms":120,"success":true,"timestamp":1750000001}"#, // 8 conflicting duplicate
        r#"{"type":"tool_call","call_id":"t2","run_id":"r1","tool_name":"x","latency_ms":1,"success":true,"timestamp":1,"extra":1}"#, // 9 unknown field
        "", // 10 blank: skipped
        r#"{"type":"tool_call","call_id":"t3","run_id":"r1","tool_name":"x","latency_ms":1,"success":true,"timestamp":1}"#, // 11 good
        r#"["an", "array"]"#, // 12 not an object
        r#"{"type":"tool_call","call_id":"t4","run_id":"r1","tool_name":"x","latency_ms":1,"succ"#, // 13 cut short
    ];
    let text = lines.join("\n"); // no final newline: line 13 is an incomplete last line
    let before = snapshot(&path);
    let (report, rejected) = import(&p, &text, true);
    assert!(!report.committed);
    assert_eq!(before, snapshot(&path), "strict: the database is unchanged");
    let numbers: Vec<u64> = rejected.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [2, 3, 4, 5, 6, 7, 8, 9, 12, 13]);

    let (report, rejected) = import(&p, &text, false);
    let numbers: Vec<u64> = rejected.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [2, 3, 4, 5, 6, 7, 8, 9, 12, 13], "{rejected:#?}");
    let reason = |n: u64| rejected.iter().find(|(l, _)| *l == n).unwrap().1.clone();
    assert!(reason(2).contains("invalid JSON"), "{}", reason(2));
    assert!(reason(3).contains("unknown type"), "{}", reason(3));
    assert!(reason(5).contains("success"), "{}", reason(5));
    assert!(reason(7).contains("latency_ms"), "{}", reason(7));
    assert!(reason(8).contains("t-old"), "{}", reason(8));
    assert!(
        reason(13).contains("incomplete last line"),
        "{}",
        reason(13)
    );
    assert_eq!(
        (
            report.runs,
            report.tool_calls,
            report.rejected,
            report.lines
        ),
        (1, 1, 10, 13)
    );
    assert_eq!(p.run("r1").unwrap().unwrap().tool_calls, 1);
}

#[test]
fn bom_crlf_and_a_final_line_without_newline_are_accepted() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    let text = "\u{feff}{\"type\":\"run\",\"run_id\":\"r\",\"metadata\":{},\"status\":\"running\",\"started_at\":1}\r\n{\"type\":\"tool_call\",\"call_id\":\"t\",\"run_id\":\"r\",\"tool_name\":\"x\",\"latency_ms\":1,\"success\":true,\"timestamp\":1}";
    let (report, rejected) = import(&p, text, false);
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!((report.runs, report.tool_calls), (1, 1));
}

#[test]
fn importing_twice_changes_nothing() {
    let (_dir, src) = temp_db();
    let a = open(&src);
    agentobs::simulate::simulate(
        &a,
        &agentobs::simulate::SimulationOptions::new(30, 3),
        |_| {},
    )
    .unwrap();
    let text = export_all(&a);
    let (_dir2, dst) = temp_db();
    let b = open(&dst);
    let (first, rejected) = import(&b, &text, false);
    assert!(rejected.is_empty());
    let once = snapshot(&dst);
    let (second, rejected) = import(&b, &text, false);
    assert!(rejected.is_empty());
    assert_eq!(once, snapshot(&dst));
    assert_eq!(
        second.duplicates,
        first.runs + first.llm_calls + first.tool_calls + first.alerts
    );
    assert_eq!(export_all(&b), text);
    crate::util::assert_rollups_consistent(&rusqlite::Connection::open(&dst).unwrap());
}

#[test]
fn exporting_an_unknown_run_is_an_error() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    assert!(matches!(
        p.export_jsonl("nope"),
        Err(Error::UnknownRun { .. })
    ));
}

/// Lines refused inside a large batch (written without per-line savepoints) leave nothing
/// behind, and every rejection is reported once, in line order, across chunk boundaries.
#[test]
fn refused_lines_in_a_large_batch_leave_nothing_behind() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.start_run_at("r0", json!({"team": "a"}), 1.0).unwrap();
    p.record_tool_call(tool("t-old", "r0", true)).unwrap();
    let good_tool = |i: usize| {
        format!(
            r#"{{"type":"tool_call","call_id":"t{i}","run_id":"r1","tool_name":"x","latency_ms":{i},"success":true,"timestamp":2}}"#
        )
    };
    let half_max = i64::MAX / 2 + 1;
    let mut lines: Vec<String> = vec![
        r#"{"type":"run","run_id":"r1","metadata":{},"status":"running","started_at":2}"#.into(),
    ];
    let mut expected = Vec::new();
    let bad: Vec<(usize, String)> = vec![
        // A conflicting duplicate into a stored run: one statement, refused before writing.
        (700, r#"{"type":"tool_call","call_id":"t-old","run_id":"r0","tool_name":"other","latency_ms":1,"success":true,"timestamp":1}"#.into()),
        // The same id under a run that does not exist: the run must not be created either.
        (1500, r#"{"type":"tool_call","call_id":"t-old","run_id":"r-new","tool_name":"x","latency_ms":1,"success":true,"timestamp":1}"#.into()),
        // A run line contradicting the stored run.
        (2100, r#"{"type":"run","run_id":"r0","metadata":{"team":"b"},"status":"running","started_at":1}"#.into()),
        // Not JSON, between two chunks' worth of good lines.
        (2600, "{oops".into()),
        // Tokens past the run's 64-bit total (the call before it takes half of it).
        (3001, format!(r#"{{"type":"llm_call","call_id":"big-2","run_id":"r1","model":"m","input_tokens":{half_max},"output_tokens":0,"latency_ms":1,"cost_usd":0,"timestamp":2}}"#)),
    ];
    for i in 2..=3100 {
        if let Some((_, line)) = bad.iter().find(|(n, _)| *n == i) {
            lines.push(line.clone());
            expected.push(i as u64);
        } else if i == 3000 || i == 3002 {
            // The second is a retry: a duplicate, although adding it again would overflow.
            lines.push(format!(r#"{{"type":"llm_call","call_id":"big-1","run_id":"r1","model":"m","input_tokens":{half_max},"output_tokens":0,"latency_ms":1,"cost_usd":0,"timestamp":2}}"#));
        } else {
            lines.push(good_tool(i));
        }
    }
    let text = lines.join("\n") + "\n";
    let mut rejected = Vec::new();
    let report = p
        .import_jsonl(
            Cursor::new(text.as_bytes()),
            &ImportOptions::default(),
            |line, e| rejected.push((line, e.to_string())),
            |_| {},
        )
        .unwrap();
    let numbers: Vec<u64> = rejected.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, expected, "{rejected:#?}");
    assert!(rejected[4].1.contains("64-bit"), "{}", rejected[4].1);
    assert_eq!(report.rejected, 5);
    assert_eq!(report.lines, 3100);
    assert_eq!((report.runs, report.llm_calls), (1, 1));
    assert_eq!(report.duplicates, 1);
    assert_eq!(report.tool_calls, 3100 - 1 - 5 - 2);
    assert!(
        p.run("r-new").unwrap().is_none(),
        "no run from a refused line"
    );
    let r0 = p.run("r0").unwrap().unwrap();
    assert_eq!(
        (r0.tool_calls, r0.metadata.clone()),
        (1, json!({"team": "a"}))
    );
    let r1 = p.run("r1").unwrap().unwrap();
    assert_eq!((r1.llm_calls, r1.input_tokens), (1, half_max));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let big2: i64 = conn
        .query_row(
            "SELECT count(*) FROM llm_calls WHERE call_id = 'big-2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(big2, 0);
    crate::util::assert_rollups_consistent(&conn);
}

/// JSONL of a running run and `calls` tool calls in it.
fn run_of_tool_calls(run_id: &str, calls: usize) -> String {
    let mut text = format!(
        r#"{{"type":"run","run_id":"{run_id}","metadata":{{}},"status":"running","started_at":1}}"#
    );
    text.push('\n');
    for i in 0..calls {
        text.push_str(&format!(r#"{{"type":"tool_call","call_id":"{run_id}-{i}","run_id":"{run_id}","tool_name":"x","latency_ms":{i},"success":true,"timestamp":1}}"#));
        text.push('\n');
    }
    text
}

/// Progress is reported as lines are applied, ends at the input's size, and never goes back.
#[test]
fn progress_reaches_the_input_size() {
    let text = run_of_tool_calls("r", 5_000);
    for strict in [false, true] {
        let p = Pipeline::open_in_memory(pricing()).unwrap();
        let mut seen = Vec::new();
        let options = ImportOptions {
            strict,
            batch_lines: 2_000,
            ..ImportOptions::default()
        };
        p.import_jsonl(
            Cursor::new(text.as_bytes()),
            &options,
            |_, _| {},
            |b| seen.push(b),
        )
        .unwrap();
        assert!(seen.len() >= 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), text.len() as u64);
    }
}

/// An import commits often enough (`batch_max_ms`), and pauses between batches long enough, that
/// a live writer sharing the file with a short busy timeout is never refused while a large import
/// runs. (Without the pause the live writer starves: it sleeps while the lock is free and wakes
/// to find the next batch holding it. With one 60 s batch it times out.)
#[test]
fn a_live_writer_is_not_starved_by_an_import() {
    let (_dir, path) = temp_db();
    let text = run_of_tool_calls("imported", 100_000);
    let importer = open(&path);
    let live = Pipeline::options()
        .busy_timeout(std::time::Duration::from_millis(200))
        .open(&path, pricing())
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let recorded = std::thread::scope(|s| {
        let writer = s.spawn(|| crate::util::record_until(&live, &done));
        let options = ImportOptions {
            batch_max_ms: 50,
            ..ImportOptions::default()
        };
        let report = importer
            .import_jsonl(
                Cursor::new(text.as_bytes()),
                &options,
                |l, e| panic!("{l}: {e}"),
                |_| {},
            )
            .unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(report.tool_calls, 100_000);
        writer.join().unwrap()
    });
    assert!(recorded > 0);
    assert_eq!(live.run("live").unwrap().unwrap().tool_calls, recorded);
    crate::util::assert_rollups_consistent(&rusqlite::Connection::open(&path).unwrap());
}
