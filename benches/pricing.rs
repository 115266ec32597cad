//! Pricing on the write path with LiteLLM's full table (3,945 token-priced models): recording a
//! call of a model the table knows and of one it does not. Both should cost about the same: an
//! unknown model is stored unpriced without the name suggestions a strict error carries, a scan of
//! every name (before that fix, `reprice --all` with this table spent 609 s on a file with 52,201
//! unpriced calls: about 12 ms each).

use agentobs::{LlmCall, Pipeline, Pricing};
use criterion::{criterion_group, criterion_main, Criterion};

fn benches(c: &mut Criterion) {
    let table = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/pricing/litellm_model_prices.json"
    );
    let Ok(pricing) = Pricing::from_path(table) else {
        eprintln!("skipped: {table} not found");
        return;
    };
    let p = Pipeline::open_in_memory(pricing).unwrap();
    let mut g = c.benchmark_group("pricing/litellm-table");
    for model in ["gpt-4o-mini", "acme-unreleased-model-7"] {
        let mut n = 0u64;
        g.bench_function(format!("record_llm_call ({model})"), |b| {
            b.iter(|| {
                n += 1;
                p.record_llm_call(LlmCall {
                    call_id: format!("{model}-{n}"),
                    run_id: format!("run-{}", n / 20),
                    model: model.into(),
                    input_tokens: 1_000,
                    output_tokens: 200,
                    latency_ms: 350.0,
                    ..LlmCall::default()
                })
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(pricing_benches, benches);
criterion_main!(pricing_benches);
