//! The dashboard against an independent computation in plain Rust over the same records, for
//! every filter alone and combined, on both code paths (histogram picks and scoped scans).

use std::collections::BTreeMap;

use agentobs::{Dashboard, DashboardFilter, LlmCall, Pipeline, Record, ToolCall};
use proptest::prelude::*;
use serde_json::json;

use crate::util::pricing;

#[derive(Debug, Clone)]
struct RunSpec {
    started_at: f64,
    status: Option<&'static str>, // None: still running
    duration_s: f64,
    env: &'static str,
    llm: Vec<(usize, i64, i64, f64, bool)>, // (model index, input, output, latency, cached)
    tools: Vec<(usize, f64, bool)>,         // (tool index, latency, success)
}

const MODELS: [&str; 4] = ["gpt-4o", "claude-sonnet-4", "cheap", "unknown-model"];
const TOOLS: [&str; 3] = ["search", "sql", "fetch"];

/// Latencies with ties, equal runs of values, tiny and huge values.
fn latency() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(100.0),
        Just(250.5),
        0.0f64..5000.0,
        1e-6f64..1e-3,
        1e6f64..1e9,
        Just(0.0),
    ]
}

fn run_spec() -> impl Strategy<Value = RunSpec> {
    (
        prop_oneof![
            Just(1_700_000_000.0),
            Just(1_700_086_400.0),
            1_700_000_000.0f64..1_700_500_000.0
        ],
        prop_oneof![Just(None), Just(Some("success")), Just(Some("failed"))],
        0.0f64..600.0,
        prop_oneof![Just("prod"), Just("dev")],
        proptest::collection::vec(
            (
                0usize..4,
                0i64..300_000,
                0i64..20_000,
                latency(),
                proptest::bool::weighted(0.1),
            ),
            0..12,
        ),
        proptest::collection::vec((0usize..3, latency(), proptest::bool::weighted(0.8)), 0..8),
    )
        .prop_map(
            |(started_at, status, duration_s, env, llm, tools)| RunSpec {
                started_at,
                status,
                duration_s,
                env,
                llm,
                tools,
            },
        )
}

/// Exact pico-dollar cost of one call under `util::PRICES` (None: unpriced).
fn cost(model: usize, input: i64, output: i64, cached: bool) -> Option<i128> {
    if cached {
        return Some(0);
    }
    let (i, o) = (input as i128, output as i128);
    match MODELS[model] {
        "gpt-4o" => Some(i * 2_500_000 + o * 10_000_000),
        "claude-sonnet-4" if input > 200_000 => Some(i * 6_000_000 + o * 22_500_000),
        "claude-sonnet-4" => Some(i * 3_000_000 + o * 15_000_000),
        "cheap" => Some(i + o * 3),
        _ => None,
    }
}

/// numpy's default percentile (linear), independently of the crate's implementation.
fn numpy(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let h = (v.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

fn store(p: &Pipeline, runs: &[RunSpec]) {
    for (r, spec) in runs.iter().enumerate() {
        let run_id = format!("run-{r}");
        let mut batch = vec![Record::StartRun {
            run_id: run_id.clone(),
            metadata: json!({"env": spec.env, "n": r % 2}),
            started_at: Some(spec.started_at),
        }];
        for (i, &(model, input, output, latency_ms, cached)) in spec.llm.iter().enumerate() {
            batch.push(Record::Llm(LlmCall {
                call_id: format!("{run_id}-l{i}"),
                run_id: run_id.clone(),
                step: i as i64,
                model: MODELS[model].into(),
                input_tokens: input,
                output_tokens: output,
                latency_ms,
                cached,
                timestamp: Some(spec.started_at),
                ..Default::default()
            }));
        }
        for (i, &(tool, latency_ms, success)) in spec.tools.iter().enumerate() {
            batch.push(Record::Tool(ToolCall {
                call_id: format!("{run_id}-t{i}"),
                run_id: run_id.clone(),
                step: 100 + i as i64,
                tool_name: TOOLS[tool].into(),
                latency_ms,
                success,
                timestamp: Some(spec.started_at),
                ..Default::default()
            }));
        }
        if let Some(status) = spec.status {
            batch.push(Record::EndRun {
                run_id: run_id.clone(),
                status: status.into(),
                ended_at: Some(spec.started_at + spec.duration_s),
            });
        }
        p.record_batch(batch).unwrap();
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

fn selected(spec: &RunSpec, f: &DashboardFilter) -> bool {
    f.since.is_none_or(|s| spec.started_at >= s)
        && f.until.is_none_or(|u| spec.started_at < u)
        && f.status
            .as_deref()
            .is_none_or(|s| s == spec.status.unwrap_or("running"))
        && f.meta.iter().all(|(k, v)| k == "env" && v == spec.env)
}

/// Checks `d` figure by figure against the same figures computed here from `runs`.
fn check(d: &Dashboard, runs: &[RunSpec], f: &DashboardFilter) {
    let scope: Vec<&RunSpec> = runs.iter().filter(|r| selected(r, f)).collect();
    let ctx = format!("filter {f:?}");
    assert_eq!(d.runs, scope.len() as i64, "{ctx}");
    let mut by_status = BTreeMap::new();
    for r in &scope {
        *by_status
            .entry(r.status.unwrap_or("running").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(d.runs_by_status, by_status, "{ctx}");

    let llm: Vec<_> = scope.iter().flat_map(|r| r.llm.iter().copied()).collect();
    let tools: Vec<_> = scope.iter().flat_map(|r| r.tools.iter().copied()).collect();
    assert_eq!(
        (d.llm_calls, d.tool_calls),
        (llm.len() as i64, tools.len() as i64),
        "{ctx}"
    );
    let lat: Vec<f64> = llm.iter().map(|c| c.3).collect();
    assert!(
        close(d.llm_latency_ms.p50, numpy(&lat, 0.5)),
        "{ctx}: llm p50 {:?} vs {:?}",
        d.llm_latency_ms.p50,
        numpy(&lat, 0.5)
    );
    assert!(
        close(d.llm_latency_ms.p95, numpy(&lat, 0.95)),
        "{ctx}: llm p95 {:?} vs {:?}",
        d.llm_latency_ms.p95,
        numpy(&lat, 0.95)
    );
    let tlat: Vec<f64> = tools.iter().map(|c| c.1).collect();
    assert!(
        close(d.tool_latency_ms.p50, numpy(&tlat, 0.5)),
        "{ctx}: tool p50"
    );
    assert!(
        close(d.tool_latency_ms.p95, numpy(&tlat, 0.95)),
        "{ctx}: tool p95"
    );
    let durations: Vec<f64> = scope
        .iter()
        .filter(|r| r.status.is_some())
        .map(|r| ((r.started_at + r.duration_s) - r.started_at) * 1000.0)
        .collect();
    assert!(
        close(d.run_duration_ms.p50, numpy(&durations, 0.5)),
        "{ctx}: run p50"
    );
    assert!(
        close(d.run_duration_ms.p95, numpy(&durations, 0.95)),
        "{ctx}: run p95"
    );

    let total: i128 = llm.iter().filter_map(|c| cost(c.0, c.1, c.2, c.4)).sum();
    assert_eq!(d.total_cost_picousd, total, "{ctx}");
    let unpriced = llm
        .iter()
        .filter(|c| cost(c.0, c.1, c.2, c.4).is_none())
        .count() as i64;
    assert_eq!(d.unpriced_calls, unpriced, "{ctx}");
    let avg = (!scope.is_empty()).then(|| total as f64 / 1e12 / scope.len() as f64);
    assert!(
        close(d.avg_cost_usd, avg),
        "{ctx}: avg {:?} vs {avg:?}",
        d.avg_cost_usd
    );
    let errors = tools.iter().filter(|t| !t.2).count();
    assert_eq!(d.tool_errors, errors as i64);
    assert_eq!(
        d.tool_error_rate,
        (!tools.is_empty()).then(|| errors as f64 / tools.len() as f64),
        "{ctx}"
    );
    let cached = llm.iter().filter(|c| c.4).count();
    assert_eq!(
        d.cache_hit_rate,
        (!llm.is_empty()).then(|| cached as f64 / llm.len() as f64),
        "{ctx}"
    );

    for (m, name) in MODELS.iter().enumerate() {
        let calls: Vec<_> = llm.iter().filter(|c| c.0 == m).collect();
        let row = d.by_model.iter().find(|r| r.model == *name);
        if calls.is_empty() {
            assert!(row.is_none(), "{ctx}: {name}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("{ctx}: no row for {name}"));
        assert_eq!(row.calls, calls.len() as i64);
        assert_eq!(
            row.input_tokens,
            calls.iter().map(|c| c.1 as i128).sum::<i128>()
        );
        assert_eq!(
            row.output_tokens,
            calls.iter().map(|c| c.2 as i128).sum::<i128>()
        );
        assert_eq!(
            row.cost_picousd,
            calls
                .iter()
                .filter_map(|c| cost(c.0, c.1, c.2, c.4))
                .sum::<i128>()
        );
        let l: Vec<f64> = calls.iter().map(|c| c.3).collect();
        assert_percentiles(
            &format!("{ctx}: {name}"),
            row.p50_latency_ms,
            row.p95_latency_ms,
            &l,
        );
    }
    for (t, name) in TOOLS.iter().enumerate() {
        let calls: Vec<_> = tools.iter().filter(|c| c.0 == t).collect();
        let Some(row) = d.by_tool.iter().find(|r| r.tool == *name) else {
            assert!(calls.is_empty(), "{ctx}: {name}");
            continue;
        };
        assert_eq!(row.calls, calls.len() as i64);
        assert_eq!(row.errors, calls.iter().filter(|c| !c.2).count() as i64);
        let l: Vec<f64> = calls.iter().map(|c| c.1).collect();
        assert_percentiles(
            &format!("{ctx}: {name}"),
            row.p50_latency_ms,
            row.p95_latency_ms,
            &l,
        );
    }
}

/// Asserts that a p50 and a p95 equal numpy's over `latencies_ms`.
fn assert_percentiles(ctx: &str, p50_ms: Option<f64>, p95_ms: Option<f64>, latencies_ms: &[f64]) {
    assert!(close(p50_ms, numpy(latencies_ms, 0.5)), "{ctx} p50");
    assert!(close(p95_ms, numpy(latencies_ms, 0.95)), "{ctx} p95");
}

fn filters() -> Vec<DashboardFilter> {
    let base = DashboardFilter::default();
    vec![
        base.clone(),
        // Selects everything, but through the scoped path: both paths must agree.
        DashboardFilter {
            since: Some(0.0),
            ..base.clone()
        },
        DashboardFilter {
            since: Some(1_700_086_400.0),
            ..base.clone()
        },
        DashboardFilter {
            until: Some(1_700_086_400.0),
            ..base.clone()
        },
        DashboardFilter {
            status: Some("success".into()),
            ..base.clone()
        },
        DashboardFilter {
            status: Some("running".into()),
            ..base.clone()
        },
        DashboardFilter {
            meta: vec![("env".into(), "prod".into())],
            ..base.clone()
        },
        DashboardFilter {
            since: Some(1_700_000_000.0),
            until: Some(1_700_300_000.0),
            status: Some("failed".into()),
            meta: vec![("env".into(), "dev".into())],
        },
        // An empty scope.
        DashboardFilter {
            since: Some(2e9),
            ..base
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_figure_matches_an_independent_computation(runs in proptest::collection::vec(run_spec(), 0..10)) {
        let p = Pipeline::open_in_memory(pricing()).unwrap();
        store(&p, &runs);
        for f in filters() {
            let d = p.dashboard(&f).unwrap();
            check(&d, &runs, &f);
        }
    }
}

#[test]
fn an_empty_scope_is_zeros_and_nulls() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    let d = p.dashboard(&DashboardFilter::default()).unwrap();
    let json = serde_json::to_value(&d).unwrap();
    for key in [
        "runs",
        "llm_calls",
        "tool_calls",
        "unpriced_calls",
        "alerts",
        "total_cost_usd",
    ] {
        assert_eq!(json[key].as_f64(), Some(0.0), "{key}");
    }
    for key in ["avg_cost_usd", "tool_error_rate", "cache_hit_rate"] {
        assert!(json[key].is_null(), "{key}");
    }
    for key in ["llm_latency_ms", "tool_latency_ms", "run_duration_ms"] {
        assert!(
            json[key]["p50"].is_null() && json[key]["p95"].is_null(),
            "{key}"
        );
    }
    for key in ["runs_by_status", "by_model", "by_tool"] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn a_single_call_and_all_equal_latencies() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    let one = vec![RunSpec {
        started_at: 1.0,
        status: Some("success"),
        duration_s: 2.0,
        env: "prod",
        llm: vec![(0, 10, 10, 42.0, false)],
        tools: vec![(0, 7.0, true); 1000],
    }];
    store(&p, &one);
    let d = p.dashboard(&DashboardFilter::default()).unwrap();
    assert_eq!(
        (d.llm_latency_ms.p50, d.llm_latency_ms.p95),
        (Some(42.0), Some(42.0))
    );
    assert_eq!(
        (d.tool_latency_ms.p50, d.tool_latency_ms.p95),
        (Some(7.0), Some(7.0))
    );
    assert_eq!(d.run_duration_ms.p50, Some(2000.0));
    check(&d, &one, &DashboardFilter::default());
}

#[test]
fn filters_with_sql_in_them_match_literally() {
    let p = Pipeline::open_in_memory(pricing()).unwrap();
    let evil = "'; DROP TABLE runs; --";
    p.start_run_at("r1", json!({ evil: evil, "env": "prod" }), 10.0)
        .unwrap();
    p.start_run_at(evil, json!({"env": "dev"}), 10.0).unwrap();
    let f = DashboardFilter {
        meta: vec![(evil.into(), evil.into())],
        ..Default::default()
    };
    assert_eq!(p.dashboard(&f).unwrap().runs, 1);
    let f = DashboardFilter {
        status: Some(evil.into()),
        ..Default::default()
    };
    assert_eq!(p.dashboard(&f).unwrap().runs, 0);
    assert_eq!(p.dashboard(&DashboardFilter::default()).unwrap().runs, 2);
}
