//! Dashboard latency on files of 10,000 and 100,000 simulated runs (5–40 calls each, seed 7):
//! unfiltered (histogram picks over the whole file) and filtered to about 1% of the runs by
//! start time (cost grows with the scope, not the file).

mod common;

use agentobs::{DashboardFilter, Pipeline, Pricing};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn benches(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("AGENTOBS_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    for runs in sizes {
        let path = common::prepared_db(runs);
        let p = Pipeline::open(&path, Pricing::builtin()).unwrap();
        let all = p.dashboard(&DashboardFilter::default()).unwrap();
        assert_eq!(all.runs, runs as i64);
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "{runs} runs: {} LLM + {} tool calls, {:.1} MB ({:.0} bytes per run)",
            all.llm_calls,
            all.tool_calls,
            size as f64 / 1e6,
            size as f64 / runs as f64
        );
        // The simulated runs start uniformly over 14 days before 2026-12-01: 1% is 3.36 hours.
        let end = 1_796_083_200.0;
        let one_percent = DashboardFilter {
            since: Some(end - 7.0 * 86_400.0),
            until: Some(end - 7.0 * 86_400.0 + 0.01 * 14.0 * 86_400.0),
            ..DashboardFilter::default()
        };
        let scoped = p.dashboard(&one_percent).unwrap().runs;
        eprintln!("1% filter selects {scoped} runs");

        let mut g = c.benchmark_group(format!("dashboard/{runs}-runs"));
        g.throughput(Throughput::Elements(
            (all.llm_calls + all.tool_calls) as u64,
        ));
        g.sample_size(20);
        g.bench_function("unfiltered", |b| {
            b.iter(|| {
                let d = p.dashboard(&DashboardFilter::default()).unwrap();
                assert_eq!(d.runs, runs as i64);
                assert!(d.llm_latency_ms.p95.is_some());
            })
        });
        g.bench_function("filtered 1%", |b| {
            b.iter(|| {
                let d = p.dashboard(&one_percent).unwrap();
                assert_eq!(d.runs, scoped);
            })
        });
        g.finish();
    }
}

criterion_group!(dashboard_benches, benches);
criterion_main!(dashboard_benches);
