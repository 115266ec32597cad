//! Alerts: thresholds (strictly greater), exactly-once firing, rules across pipelines and
//! processes, callbacks, and a property test against a plain model of the rules.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentobs::{AlertFilter, Error, LlmCall, Pipeline, Pricing, Record, ToolCall};
use proptest::prelude::*;
use rusqlite::Connection;

use crate::util::{llm, open, pricing, temp_db, tool};

/// 1,000,000 input tokens of `cheap` cost exactly 1 pico-dollar per token: 1e-6 USD.
fn cheap(call_id: &str, run: &str, input: i64) -> LlmCall {
    LlmCall {
        model: "cheap".into(),
        ..llm(call_id, run, input, 0)
    }
}

#[test]
fn cost_fires_strictly_above_and_once() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.set_alert("cost_usd", 0.000002).unwrap(); // 2,000,000 pico-dollars
    assert!(
        p.record_llm_call(cheap("c1", "r", 1_999_999))
            .unwrap()
            .is_empty(),
        "below"
    );
    assert!(
        p.record_llm_call(cheap("c2", "r", 1)).unwrap().is_empty(),
        "exactly at"
    );
    let fired = p.record_llm_call(cheap("c3", "r", 1)).unwrap();
    assert_eq!(fired.len(), 1, "one pico-dollar above");
    assert_eq!(
        (fired[0].metric.as_str(), fired[0].call_id.as_str()),
        ("cost_usd", "c3")
    );
    assert_eq!(fired[0].value, 0.000002000001);
    assert_eq!(fired[0].threshold, 0.000002);
    assert!(
        p.record_llm_call(cheap("c4", "r", 5)).unwrap().is_empty(),
        "at most once per run"
    );
    assert_eq!(
        p.record_llm_call(cheap("c5", "other", 3_000_000))
            .unwrap()
            .len(),
        1,
        "per run"
    );
    let summary = p.end_run("r", "success").unwrap();
    assert_eq!(summary.alerts.len(), 1);
    assert_eq!(p.alerts(&AlertFilter::default()).unwrap().len(), 2);
    assert_eq!(p.alerts(&AlertFilter::run("other")).unwrap().len(), 1);
}

#[test]
fn each_metric_at_below_and_above() {
    // (metric, threshold, records that reach exactly the threshold, one record that crosses it)
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.set_alert("tokens", 100.0).unwrap();
    assert!(
        p.record_llm_call(llm("a1", "tok", 60, 39))
            .unwrap()
            .is_empty(),
        "99"
    );
    assert!(
        p.record_llm_call(llm("a2", "tok", 1, 0))
            .unwrap()
            .is_empty(),
        "100"
    );
    assert_eq!(
        p.record_llm_call(llm("a3", "tok", 0, 1)).unwrap()[0].value,
        101.0
    );

    p.set_alert("llm_calls", 2.0).unwrap();
    assert!(p
        .record_llm_call(llm("b1", "calls", 0, 0))
        .unwrap()
        .is_empty());
    assert!(p
        .record_llm_call(llm("b2", "calls", 0, 0))
        .unwrap()
        .is_empty());
    let fired = p.record_llm_call(llm("b3", "calls", 0, 0)).unwrap();
    assert_eq!(
        fired.iter().map(|a| a.metric.as_str()).collect::<Vec<_>>(),
        ["llm_calls"]
    );

    p.set_alert("llm_latency_ms", 1000.0).unwrap();
    let at = LlmCall {
        latency_ms: 1000.0,
        ..llm("l1", "lat", 0, 0)
    };
    assert!(p.record_llm_call(at).unwrap().is_empty());
    let above = LlmCall {
        latency_ms: 1000.001,
        ..llm("l2", "lat", 0, 0)
    };
    assert_eq!(
        p.record_llm_call(above).unwrap()[0].metric,
        "llm_latency_ms"
    );

    p.set_alert_with("error_rate", 0.5, 4).unwrap();
    for (i, ok) in [false, false, true].into_iter().enumerate() {
        let fired = p
            .record_tool_call(tool(&format!("t{i}"), "err", ok))
            .unwrap();
        assert!(fired.is_empty(), "waits for 4 tool calls (rate {})", i);
    }
    assert!(
        p.record_tool_call(tool("t3", "err", true))
            .unwrap()
            .is_empty(),
        "2/4 = 0.5 is not above"
    );
    let fired = p.record_tool_call(tool("t4", "err", false)).unwrap();
    assert_eq!(
        (fired[0].metric.as_str(), fired[0].value),
        ("error_rate", 0.6)
    );
}

#[test]
fn rules_added_mid_run_fire_on_the_next_write_and_removed_rules_do_not() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.record_llm_call(llm("c1", "r", 500, 500)).unwrap();
    p.set_alert("tokens", 10.0).unwrap();
    // A tool call changes no token count, but the rule is breached: it fires now.
    let fired = p.record_tool_call(tool("t1", "r", true)).unwrap();
    assert_eq!(
        (fired[0].metric.as_str(), fired[0].call_id.as_str()),
        ("tokens", "t1")
    );
    assert!(p.remove_alert("tokens").unwrap());
    assert!(!p.remove_alert("tokens").unwrap());
    assert!(p
        .record_llm_call(llm("c2", "r2", 500, 500))
        .unwrap()
        .is_empty());
    assert!(p.alert_rules().unwrap().is_empty());
}

#[test]
fn rules_persist_and_are_shared_between_pipelines() {
    let (_dir, path) = temp_db();
    let a = open(&path);
    let b = open(&path);
    a.set_alert("llm_calls", 0.0).unwrap();
    let fired = b.record_llm_call(llm("c1", "r", 1, 1)).unwrap();
    assert_eq!(
        fired.len(),
        1,
        "a rule set in one pipeline applies in another"
    );
    drop((a, b));
    let c = open(&path);
    assert_eq!(c.alert_rules().unwrap()[0].metric.as_str(), "llm_calls");
}

#[test]
fn bad_rules_are_typed_errors() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    match p.set_alert("cost", 1.0) {
        Err(Error::UnknownMetric { metric, known }) => {
            assert_eq!(metric, "cost");
            assert!(known.contains(&"cost_usd"));
        }
        other => panic!("{other:?}"),
    }
    for t in [f64::NAN, f64::INFINITY, -0.5] {
        assert!(matches!(
            p.set_alert("cost_usd", t),
            Err(Error::InvalidValue {
                field: "threshold",
                ..
            })
        ));
    }
    assert!(matches!(
        p.set_alert_with("tokens", 1.0, 5),
        Err(Error::InvalidValue {
            field: "min_calls",
            ..
        })
    ));
    assert!(p.alert_rules().unwrap().is_empty());
}

#[test]
fn batches_fire_like_single_writes_and_callbacks_run_after_commit() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let p = Pipeline::options()
        .on_alert(move |a| {
            counter.fetch_add(1, Ordering::SeqCst);
            if a.run_id == "panics" {
                panic!("a broken callback");
            }
            sink.lock().unwrap().push(a.clone());
        })
        .open_in_memory(pricing())
        .unwrap();
    p.set_alert("llm_calls", 1.0).unwrap();
    let batch: Vec<Record> = (0..3)
        .map(|i| Record::Llm(llm(&format!("c{i}"), "r", 1, 1)))
        .collect();
    let outcome = p.record_batch(batch).unwrap();
    assert_eq!(outcome.alerts.len(), 1);
    assert_eq!(
        outcome.alerts[0].call_id, "c1",
        "fires on the record that crossed"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A panicking callback neither poisons the pipeline nor loses the write.
    let fired = p
        .record_batch((0..2).map(|i| Record::Llm(llm(&format!("p{i}"), "panics", 1, 1))))
        .unwrap();
    assert_eq!(fired.alerts.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(p.run("panics").unwrap().unwrap().llm_calls, 2);
    p.record_llm_call(llm("after", "r", 1, 1)).unwrap();
}

fn alert_rows(path: &std::path::Path) -> Vec<(String, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT run_id, metric FROM alerts ORDER BY run_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

const RUNS: usize = 6;
const CALLS_PER_WRITER: usize = 40;

/// Each writer adds CALLS_PER_WRITER calls of 1e-6 USD to every run; the threshold is crossed
/// somewhere in the middle, by whichever writer gets there.
fn write_share(p: &Pipeline, writer: usize) -> usize {
    let mut fired = 0;
    for i in 0..CALLS_PER_WRITER {
        for run in 0..RUNS {
            let call = cheap(
                &format!("w{writer}-r{run}-c{i}"),
                &format!("run-{run}"),
                1_000_000,
            );
            fired += p.record_llm_call(call).unwrap().len();
        }
    }
    fired
}

#[test]
fn eight_threads_fire_exactly_once_per_run() {
    let (_dir, path) = temp_db();
    let p = open(&path);
    p.set_alert("cost_usd", 0.0001).unwrap(); // crossed at the 101st call of a run (of 320)
    let fired: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                s.spawn({
                    let p = &p;
                    move || write_share(p, w)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        fired, RUNS,
        "each run's crossing was returned to exactly one writer"
    );
    let rows = alert_rows(&path);
    let runs: BTreeSet<_> = rows.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!((rows.len(), runs.len()), (RUNS, RUNS), "{rows:?}");
}

/// The child side of `four_processes_fire_exactly_once_per_run`: runs only when re-executed
/// by that test with AGENTOBS_TEST_CHILD set.
#[test]
fn child_writer() {
    let (Ok(path), Ok(writer)) = (
        std::env::var("AGENTOBS_TEST_CHILD"),
        std::env::var("AGENTOBS_TEST_WRITER"),
    ) else {
        return;
    };
    let p = Pipeline::open(&path, pricing()).unwrap();
    let fired = write_share(&p, writer.parse().unwrap());
    println!("FIRED {fired}");
}

#[test]
fn four_processes_fire_exactly_once_per_run() {
    let me = std::env::current_exe().unwrap();
    let (_dir, path) = temp_db();
    open(&path).set_alert("cost_usd", 0.0001).unwrap();
    let spawned: Vec<_> = (0..4)
        .map(|w| {
            Command::new(&me)
                .args([
                    "--exact",
                    "alerts::child_writer",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("AGENTOBS_TEST_CHILD", &path)
                .env("AGENTOBS_TEST_WRITER", w.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut fired = 0;
    for child in spawned {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        // The harness prints "test … ... " before the test's own output, on the same line.
        let n: usize = text
            .split("FIRED ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the child ran")
            .parse()
            .unwrap();
        fired += n;
    }
    assert_eq!(fired, RUNS);
    let rows = alert_rows(&path);
    let runs: BTreeSet<_> = rows.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!((rows.len(), runs.len()), (RUNS, RUNS), "{rows:?}");
    let conn = Connection::open(&path).unwrap();
    let calls: i64 = conn
        .query_row("SELECT sum(llm_calls) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(calls as usize, 4 * RUNS * CALLS_PER_WRITER);
}

#[derive(Debug, Clone)]
enum Step {
    Llm {
        run: u8,
        input: i64,
        latency_ms: f64,
    },
    Tool {
        run: u8,
        success: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, 0i64..3_000_000, 0.0f64..3000.0).prop_map(|(run, input, latency_ms)| Step::Llm {
            run,
            input,
            latency_ms
        }),
        (0u8..3, any::<bool>()).prop_map(|(run, success)| Step::Tool { run, success }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The alerts fired equal those of a plain model of the rules over the same sequence.
    #[test]
    fn fired_alerts_match_a_plain_model(
        steps in proptest::collection::vec(step(), 1..80),
        cost_t in 0u64..20, tokens_t in 0u64..8_000_000, calls_t in 0u64..20, lat_t in 0.0f64..3000.0,
        rate_t in 0.0f64..1.0, min_calls in 0i64..5,
    ) {
        let p = Pipeline::open_in_memory(pricing()).unwrap();
        let cost_t = cost_t as f64 * 0.000001;
        p.set_alert("cost_usd", cost_t).unwrap();
        p.set_alert("tokens", tokens_t as f64).unwrap();
        p.set_alert("llm_calls", calls_t as f64).unwrap();
        p.set_alert("llm_latency_ms", lat_t).unwrap();
        p.set_alert_with("error_rate", rate_t, min_calls).unwrap();

        #[derive(Default, Clone)]
        struct Model { picousd: i128, tokens: i64, llm: i64, tools: i64, errors: i64 }
        let mut model = vec![Model::default(); 3];
        let mut expected = BTreeSet::new();
        let mut got = BTreeSet::new();
        for (i, s) in steps.iter().enumerate() {
            let id = format!("c{i}");
            let (run, latency, fired) = match s {
                Step::Llm { run, input, latency_ms } => {
                    let m = &mut model[*run as usize];
                    m.picousd += *input as i128; // "cheap": 1 pico-dollar per input token
                    m.tokens += input;
                    m.llm += 1;
                    let c = LlmCall { latency_ms: *latency_ms, ..cheap(&id, &format!("r{run}"), *input) };
                    (*run, Some(*latency_ms), p.record_llm_call(c).unwrap())
                }
                Step::Tool { run, success } => {
                    let m = &mut model[*run as usize];
                    m.tools += 1;
                    m.errors += i64::from(!success);
                    let c = ToolCall { ..tool(&id, &format!("r{run}"), *success) };
                    (*run, None, p.record_tool_call(c).unwrap())
                }
            };
            let m = &model[run as usize];
            let mut breached = Vec::new();
            if m.picousd > (cost_t * 1e12).round() as i128 { breached.push("cost_usd"); }
            if m.tokens as f64 > tokens_t as f64 { breached.push("tokens"); }
            if m.llm as f64 > calls_t as f64 { breached.push("llm_calls"); }
            if latency.is_some_and(|l| l > lat_t) { breached.push("llm_latency_ms"); }
            if m.tools > 0 && m.tools >= min_calls && m.errors as f64 / m.tools as f64 > rate_t { breached.push("error_rate"); }
            for metric in breached {
                if expected.iter().all(|(r, mm, _): &(u8, &str, String)| !(*r == run && *mm == metric)) {
                    expected.insert((run, metric, id.clone()));
                }
            }
            for a in fired {
                got.insert((a.run_id[1..].parse::<u8>().unwrap(), match a.metric.as_str() {
                    "cost_usd" => "cost_usd", "tokens" => "tokens", "llm_calls" => "llm_calls",
                    "llm_latency_ms" => "llm_latency_ms", _ => "error_rate",
                }, a.call_id));
            }
        }
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn unknown_pricing_does_not_block_alerts() {
    let p = Pipeline::open_in_memory(Pricing::empty()).unwrap();
    p.set_alert("llm_calls", 0.0).unwrap();
    assert_eq!(p.record_llm_call(llm("c", "r", 1, 1)).unwrap().len(), 1);
}

#[test]
fn alerts_are_listed_with_filters() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    p.set_alert("llm_calls", 0.0).unwrap();
    p.set_alert("tokens", 1.0).unwrap();
    p.record_llm_call(llm("a", "r1", 5, 5)).unwrap();
    p.record_llm_call(llm("b", "r2", 0, 0)).unwrap();
    assert_eq!(p.alerts(&AlertFilter::default()).unwrap().len(), 3);
    assert_eq!(p.alerts(&AlertFilter::run("r1")).unwrap().len(), 2);
    let by_metric = AlertFilter {
        metric: Some("tokens".into()),
        ..Default::default()
    };
    assert_eq!(p.alerts(&by_metric).unwrap().len(), 1);
    let future = AlertFilter {
        since: Some(4e9),
        ..Default::default()
    };
    assert!(p.alerts(&future).unwrap().is_empty());
    let bad = AlertFilter {
        metric: Some("mood".into()),
        ..Default::default()
    };
    assert!(matches!(p.alerts(&bad), Err(Error::UnknownMetric { .. })));
}

#[test]
fn a_slow_callback_does_not_block_other_writers() {
    use std::sync::mpsc;
    let (_d, path) = temp_db();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (entered_tx, released) = (Mutex::new(entered_tx), Mutex::new(released));
    let slow = Pipeline::options()
        .on_alert(move |_| {
            entered_tx.lock().unwrap().send(()).unwrap();
            // Hold the callback until the test has written elsewhere (bounded, never a hang).
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(30));
        })
        .open(&path, pricing())
        .unwrap();
    slow.set_alert("llm_calls", 0.0).unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| slow.record_llm_call(llm("c1", "r", 1, 1)).unwrap());
        entered.recv().unwrap(); // the callback is running now
                                 // The same pipeline and another one on the file both write while it runs.
        assert!(slow
            .record_llm_call(llm("c2", "r", 1, 1))
            .unwrap()
            .is_empty());
        open(&path).record_tool_call(tool("t1", "r", true)).unwrap();
        release.send(()).unwrap();
        assert_eq!(h.join().unwrap().len(), 1);
    });
    assert_eq!(open(&path).run("r").unwrap().unwrap().llm_calls, 2);
}
