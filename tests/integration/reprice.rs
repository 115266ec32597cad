//! Unpriced calls, price history at the store, and re-pricing.

use agentobs::{AlertFilter, DashboardFilter, LlmCall, Pipeline, Pricing, RepriceScope};
use rusqlite::Connection;

use crate::util::{assert_rollups_consistent, llm, temp_db};

fn costs(path: &std::path::Path) -> Vec<(String, Option<i64>, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT call_id, cost_picousd, cost_source FROM llm_calls ORDER BY call_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn price_history_applies_at_each_calls_timestamp() {
    let pricing = Pricing::from_json_str(
        r#"{"m": [{"since": "2024-05-13", "input": 5, "output": 15}, {"since": "2024-10-01", "input": 2.5, "output": 10}]}"#,
    )
    .unwrap();
    let p = Pipeline::open_in_memory(pricing).unwrap();
    let at = |t: &str| Some(agentobs::parse_time(t).unwrap());
    for (id, t) in [
        ("before", "2024-05-12T23:59:59Z"),
        ("first", "2024-06-01"),
        ("edge", "2024-10-01T00:00:00Z"),
        ("later", "2025-01-01"),
    ] {
        p.record_llm_call(LlmCall {
            model: "m".into(),
            timestamp: at(t),
            ..llm(id, id, 1_000_000, 0)
        })
        .unwrap();
    }
    let cost = |id: &str| p.run(id).unwrap().unwrap();
    assert_eq!(
        cost("before").unpriced_calls,
        1,
        "before every since: unpriced"
    );
    assert_eq!(cost("first").cost_usd, 5.0);
    assert_eq!(
        cost("edge").cost_usd,
        2.5,
        "exactly at since: the new price"
    );
    assert_eq!(cost("later").cost_usd, 2.5);
}

#[test]
fn reprice_fills_unpriced_changes_computed_keeps_given_and_is_idempotent() {
    let (_d, path) = temp_db();
    let old = Pricing::from_json_str(r#"{"a": {"input": 1, "output": 1}}"#).unwrap();
    let p = Pipeline::open(&path, old).unwrap();
    p.set_alert("cost_usd", 0.5).unwrap();
    p.record_llm_call(LlmCall {
        model: "a".into(),
        ..llm("c1", "r1", 1_000_000, 0)
    })
    .unwrap(); // 1.0 computed
    p.record_llm_call(LlmCall {
        model: "new-model".into(),
        ..llm("c2", "r1", 1_000_000, 0)
    })
    .unwrap(); // unpriced
    p.record_llm_call(LlmCall {
        model: "a".into(),
        cost_usd: Some(0.25),
        ..llm("c3", "r2", 1_000_000, 0)
    })
    .unwrap(); // given
    let alerts_before = p.alerts(&AlertFilter::default()).unwrap();
    drop(p);

    let new = Pricing::from_json_str(
        r#"{"a": {"input": 2, "output": 2}, "new-model": {"input": 3, "output": 3}}"#,
    )
    .unwrap();
    let p = Pipeline::open(&path, new).unwrap();
    // Default: only unpriced calls.
    let r = p.reprice(&RepriceScope::default()).unwrap();
    assert_eq!((r.examined, r.changed, r.still_unpriced), (1, 1, 0));
    assert_eq!((r.before_picousd, r.after_picousd), (0, 3_000_000_000_000));
    assert_eq!(
        costs(&path),
        [
            ("c1".into(), Some(1_000_000_000_000), "computed".into()),
            ("c2".into(), Some(3_000_000_000_000), "computed".into()),
            ("c3".into(), Some(250_000_000_000), "given".into()),
        ]
    );
    // --all: computed costs follow the new table; given costs stay.
    let r = p
        .reprice(&RepriceScope {
            all: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.examined, r.changed), (2, 1));
    assert_eq!(costs(&path)[0].1, Some(2_000_000_000_000));
    assert_eq!(costs(&path)[2].1, Some(250_000_000_000));
    // Idempotent.
    let snapshot = crate::util::snapshot(&path);
    let r = p
        .reprice(&RepriceScope {
            all: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.changed, 0);
    assert_eq!(snapshot, crate::util::snapshot(&path));
    // --include-given replaces the given cost too.
    let r = p
        .reprice(&RepriceScope {
            all: true,
            include_given: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.changed, 1);
    assert_eq!(
        costs(&path)[2],
        ("c3".into(), Some(2_000_000_000_000), "computed".into())
    );
    // Rollups equal their calls; no alert was re-fired.
    assert_rollups_consistent(&Connection::open(&path).unwrap());
    assert_eq!(p.alerts(&AlertFilter::default()).unwrap(), alerts_before);
    assert_eq!(p.run("r1").unwrap().unwrap().cost_usd, 5.0);
    assert_eq!(p.run("r1").unwrap().unwrap().unpriced_calls, 0);
    let d = p.dashboard(&DashboardFilter::default()).unwrap();
    assert_eq!(d.total_cost_picousd, 7_000_000_000_000);
    assert_eq!(
        d.by_model.iter().map(|m| m.cost_picousd).sum::<i128>(),
        d.total_cost_picousd
    );
}

#[test]
fn reprice_respects_the_time_range() {
    let (_d, path) = temp_db();
    let p = Pipeline::open(&path, Pricing::empty()).unwrap();
    for (i, t) in [100.0, 200.0, 300.0].iter().enumerate() {
        p.record_llm_call(LlmCall {
            model: "m".into(),
            timestamp: Some(*t),
            ..llm(&format!("c{i}"), "r", 10, 10)
        })
        .unwrap();
    }
    drop(p);
    let p = Pipeline::open(
        &path,
        Pricing::from_json_str(r#"{"m": {"input": 1, "output": 1}}"#).unwrap(),
    )
    .unwrap();
    let r = p
        .reprice(&RepriceScope {
            since: Some(150.0),
            until: Some(300.0),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((r.examined, r.changed), (1, 1));
    assert_eq!(p.run("r").unwrap().unwrap().unpriced_calls, 2);
}

/// Also: a live writer with a 200 ms busy timeout records calls throughout, between re-pricing
/// transactions of 50 ms (re-pricing pauses after each; without the pause the writer starves and
/// times out).
#[test]
fn dashboard_reads_stay_consistent_and_live_writes_go_on_while_100k_calls_are_repriced() {
    let (_d, path) = temp_db();
    let p = Pipeline::open(&path, Pricing::empty()).unwrap();
    let models = ["m1", "m2", "m3"];
    for b in 0..20 {
        let batch = (0..5_000).map(|i| {
            agentobs::Record::Llm(LlmCall {
                model: models[i % 3].into(),
                latency_ms: (i % 977) as f64,
                ..llm(
                    &format!("c{b}-{i}"),
                    &format!("r{}", i % 200),
                    1000 + i as i64,
                    10,
                )
            })
        });
        p.record_batch(batch).unwrap();
    }
    drop(p);
    let pricing = Pricing::from_json_str(
        r#"{"m1": {"input": 1, "output": 2}, "m2": {"input": 3, "output": 4}, "m3": {"input": 0.5, "output": 9}}"#,
    )
    .unwrap();
    let writer = Pipeline::open(&path, pricing).unwrap();
    let reader = Pipeline::open(&path, Pricing::empty()).unwrap();
    let live = Pipeline::options()
        .busy_timeout(std::time::Duration::from_millis(200))
        .open(&path, Pricing::empty())
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (reads, written) = std::thread::scope(|s| {
        let w = s.spawn(|| crate::util::record_until(&live, &stop));
        let h = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let d = reader.dashboard(&DashboardFilter::default()).unwrap();
                // Totals come from the run rollups, per-model figures from the histogram: both
                // change in the same transaction, so they always agree.
                let by_model: i128 = d.by_model.iter().map(|m| m.cost_picousd).sum();
                assert_eq!(d.total_cost_picousd, by_model, "inconsistent read");
                let unpriced: i64 = d.by_model.iter().map(|m| m.unpriced_calls).sum();
                assert_eq!(d.unpriced_calls, unpriced, "inconsistent read");
                reads += 1;
            }
            reads
        });
        let scope = RepriceScope {
            batch_max_ms: 50,
            ..RepriceScope::default()
        };
        let r = writer.reprice(&scope).unwrap();
        assert_eq!(
            (r.examined, r.changed, r.still_unpriced),
            (100_000, 100_000, 0)
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (h.join().unwrap(), w.join().unwrap())
    });
    assert!(reads > 0);
    assert!(written > 0);
    assert_eq!(live.run("live").unwrap().unwrap().tool_calls, written);
    assert_rollups_consistent(&Connection::open(&path).unwrap());
}
