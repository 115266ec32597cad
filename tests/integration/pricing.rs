//! Pricing: exactness against an independent decimal reference, the LiteLLM table, lookup and
//! bad tables.

use std::path::Path;
use std::str::FromStr;

use agentobs::{DashboardFilter, Error, LlmCall, Pipeline, Pricing, Record, Usage, PICO_PER_USD};
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::util::llm;

const LITELLM: &str = "../shared/pricing/litellm_model_prices.json";

/// The cost rule of SPEC section 3, in decimal arithmetic over the price *texts*.
fn reference_cost(prices: &[Option<&str>; 5], usage: &Usage, per: Decimal) -> Decimal {
    let d = |s: &str| Decimal::from_str(s).unwrap();
    let input = d(prices[0].unwrap());
    let output = d(prices[1].unwrap());
    let cached = prices[2].map(d).unwrap_or(input);
    let write = prices[3].map(d).unwrap_or(input);
    let reasoning = prices[4].map(d).unwrap_or(output);
    let uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens;
    (Decimal::from(uncached) * input
        + Decimal::from(usage.cached_input_tokens) * cached
        + Decimal::from(usage.cache_write_tokens) * write
        + Decimal::from(usage.output_tokens - usage.reasoning_tokens) * output
        + Decimal::from(usage.reasoning_tokens) * reasoning)
        / per
}

fn price_text() -> impl Strategy<Value = String> {
    // Up to 6 decimals per 1M tokens, from 0 to 999.999999.
    (0u64..1_000_000_000).prop_map(|micro| {
        let s = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    })
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        0i64..=1_000_000_000,
        0i64..=1_000_000_000,
        0u32..=100,
        0u32..=100,
        0u32..=100,
    )
        .prop_map(|(input, output, cached_pct, write_pct, reasoning_pct)| {
            let cached = input / 100 * cached_pct as i64 / 2;
            let write = input / 100 * write_pct as i64 / 2;
            Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached,
                cache_write_tokens: write,
                reasoning_tokens: output / 100 * reasoning_pct as i64,
            }
        })
}

proptest! {
    #[test]
    fn cost_equals_decimal_reference(
        input in price_text(), output in price_text(), cached in proptest::option::of(price_text()),
        write in proptest::option::of(price_text()), reasoning in proptest::option::of(price_text()),
        tier_input in price_text(), tier_output in price_text(),
        u in usage(),
    ) {
        let json = format!(
            r#"{{"m": {{"input": {input}, "output": {output}{}{}{},
                 "tiers": [{{"above_input_tokens": 500000000, "input": {tier_input}, "output": {tier_output}}}]}}}}"#,
            cached.as_ref().map(|c| format!(r#", "cached_input": {c}"#)).unwrap_or_default(),
            write.as_ref().map(|c| format!(r#", "cache_write": {c}"#)).unwrap_or_default(),
            reasoning.as_ref().map(|c| format!(r#", "reasoning": {c}"#)).unwrap_or_default(),
        );
        let pricing = Pricing::from_json_str(&json).unwrap();
        prop_assert_eq!(pricing.load_report().rounded_prices, 0);
        let in_tier = u.input_tokens > 500_000_000;
        let prices = if in_tier {
            [Some(tier_input.as_str()), Some(tier_output.as_str()), cached.as_deref(), write.as_deref(), reasoning.as_deref()]
        } else {
            [Some(input.as_str()), Some(output.as_str()), cached.as_deref(), write.as_deref(), reasoning.as_deref()]
        };
        let expected = reference_cost(&prices, &u, Decimal::from(1_000_000));
        let cost = pricing.cost("m", &u, None).unwrap();
        let got = Decimal::from_i128_with_scale(cost.total_picousd as i128, 12);
        prop_assert_eq!(got, expected);
        // The f64 is the nearest to the exact value.
        let nearest = f64::from_str(&expected.to_string()).unwrap();
        prop_assert_eq!(cost.usd(), nearest);
        prop_assert_eq!(
            cost.uncached_input_picousd + cost.cached_input_picousd + cost.cache_write_picousd
                + cost.output_picousd + cost.reasoning_picousd,
            cost.total_picousd
        );
    }
}

#[test]
fn a_million_calls_sum_exactly() {
    let pricing = Pricing::from_json_str(
        r#"{"a": {"input": 0.000001, "output": 0.000003}, "b": {"input": 2.5, "output": 10, "cached_input": 1.25},
            "c": {"input": 15.123457, "output": 75.000001}}"#,
    )
    .unwrap();
    let p = Pipeline::open_in_memory(pricing).unwrap();
    let mut seed = 0x1234_5678_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut expected = Decimal::ZERO;
    let prices = [
        ("a", "0.000001", "0.000003", "0.000001"),
        ("b", "2.5", "10", "1.25"),
        ("c", "15.123457", "75.000001", "15.123457"),
    ];
    const CALLS: usize = 1_000_000;
    const BATCH: usize = 10_000;
    for b in 0..CALLS / BATCH {
        let mut batch = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let (model, input_p, output_p, cached_p) = prices[(next() % 3) as usize];
            let input = (next() % 200_000) as i64;
            let output = (next() % 20_000) as i64;
            let cached = (next() % (input as u64 + 1)) as i64;
            let u = Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached,
                ..Usage::default()
            };
            expected += reference_cost(
                &[Some(input_p), Some(output_p), Some(cached_p), None, None],
                &u,
                Decimal::from(1_000_000),
            );
            batch.push(Record::Llm(LlmCall {
                model: model.into(),
                cached_input_tokens: Some(cached),
                ..llm(
                    &format!("c{b}-{i}"),
                    &format!("run-{}", i % 100),
                    input,
                    output,
                )
            }));
        }
        p.record_batch(batch).unwrap();
    }
    let d = p.dashboard(&DashboardFilter::default()).unwrap();
    assert_eq!(d.llm_calls, CALLS as i64);
    assert_eq!(
        Decimal::from_i128_with_scale(d.total_cost_picousd, 12),
        expected
    );
    let by_model: i128 = d.by_model.iter().map(|m| m.cost_picousd).sum();
    assert_eq!(by_model, d.total_cost_picousd);
    let filtered = p
        .dashboard(&DashboardFilter {
            since: Some(0.0),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(filtered.total_cost_picousd, d.total_cost_picousd);
    assert_eq!(PICO_PER_USD, 1_000_000_000_000);
}

#[test]
fn litellm_table_loads_and_matches_per_token_decimal_arithmetic() {
    if !Path::new(LITELLM).exists() {
        eprintln!("skipping: {LITELLM} not present");
        return;
    }
    let text = std::fs::read_to_string(LITELLM).unwrap();
    let pricing = Pricing::from_json_str(&text).unwrap();
    let report = pricing.load_report();
    assert_eq!(report.format, "litellm");
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    let with_token_prices = raw
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| {
            *k != "sample_spec"
                && (v.get("input_cost_per_token").is_some()
                    || v.get("output_cost_per_token").is_some())
        })
        .count();
    assert_eq!(
        report.models, with_token_prices,
        "every model with token prices loads"
    );
    assert!(
        !report.skipped.is_empty(),
        "image/audio-only models are reported, not silently dropped"
    );
    eprintln!(
        "LiteLLM: {} models, {} prices rounded, {} skipped",
        report.models,
        report.rounded_prices,
        report.skipped.len()
    );

    let sample = [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "o3",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "mistral/mistral-large-latest",
        "mistral/codestral-latest",
        "deepseek/deepseek-chat",
        "deepseek/deepseek-reasoner",
        "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "meta.llama3-1-70b-instruct-v1:0",
        "gpt-3.5-turbo",
        "gpt-4-turbo",
        "o1",
    ];
    for model in sample {
        let entry = &raw[model];
        let text_of = |k: &str| {
            entry
                .get(k)
                .and_then(|v| v.as_f64())
                .map(|f| format!("{f}"))
        };
        for usage in [
            Usage {
                input_tokens: 1_234_567,
                output_tokens: 89_012,
                cached_input_tokens: 100_000,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            },
            Usage {
                input_tokens: 150_000,
                output_tokens: 3_000,
                cached_input_tokens: 0,
                cache_write_tokens: 20_000,
                reasoning_tokens: 0,
            },
        ] {
            let tier = usage.input_tokens > 200_000
                && entry
                    .get("input_cost_per_token_above_200k_tokens")
                    .is_some();
            let key = |base: &str| {
                if tier {
                    format!("{base}_above_200k_tokens")
                } else {
                    base.to_string()
                }
            };
            let input =
                text_of(&key("input_cost_per_token")).or_else(|| text_of("input_cost_per_token"));
            let output =
                text_of(&key("output_cost_per_token")).or_else(|| text_of("output_cost_per_token"));
            let cached = text_of(&key("cache_read_input_token_cost"))
                .or_else(|| text_of("cache_read_input_token_cost"));
            let write = text_of(&key("cache_creation_input_token_cost"))
                .or_else(|| text_of("cache_creation_input_token_cost"));
            let reasoning = text_of("output_cost_per_reasoning_token");
            let expected = reference_cost(
                &[
                    input.as_deref(),
                    output.as_deref(),
                    cached.as_deref(),
                    write.as_deref(),
                    reasoning.as_deref(),
                ],
                &usage,
                Decimal::ONE,
            );
            let got = pricing.cost(model, &usage, None).unwrap();
            assert_eq!(
                Decimal::from_i128_with_scale(got.total_picousd as i128, 12),
                expected.round_dp(12),
                "{model}"
            );
        }
    }
}

#[test]
fn lookup_follows_the_four_steps() {
    let p = Pricing::builtin();
    for (asked, found) in [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ] {
        assert_eq!(p.resolve(asked), Some(found), "{asked}");
    }
    match p.compute_cost("gpt-4o-turbo-ultra", 1, 1) {
        Err(Error::UnknownModel { model, suggestions }) => {
            assert_eq!(model, "gpt-4o-turbo-ultra");
            assert!(!suggestions.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rounding_is_half_even_and_reported() {
    // 0.0000005 USD per 1M = 0.5 pico per token: rounds to 0 (even); 0.0000015 → 2; 0.0000025 → 2.
    let p = Pricing::from_json_str(
        r#"{"a": {"input": 0.0000005, "output": 0.0000015}, "b": {"input": 0.0000025, "output": 1}}"#,
    )
    .unwrap();
    assert_eq!(p.load_report().rounded_prices, 3);
    let u = |i, o| Usage {
        input_tokens: i,
        output_tokens: o,
        ..Usage::default()
    };
    assert_eq!(p.cost("a", &u(1000, 0), None).unwrap().total_picousd, 0);
    assert_eq!(p.cost("a", &u(0, 1000), None).unwrap().total_picousd, 2000);
    assert_eq!(p.cost("b", &u(1000, 0), None).unwrap().total_picousd, 2000);
}

#[test]
fn tiers_and_price_history() {
    let p = Pricing::from_json_str(
        r#"{"m": [{"since": "2024-05-13", "input": 5.0, "output": 15.0},
                  {"since": "2024-10-01T00:00:00Z", "input": 2.5, "output": 10.0,
                   "tiers": [{"above_input_tokens": 1000, "input": 4}]}]}"#,
    )
    .unwrap();
    let u = Usage {
        input_tokens: 1_000_000,
        output_tokens: 0,
        ..Usage::default()
    };
    let at = |t: &str| Some(agentobs::parse_time(t).unwrap());
    assert_eq!(p.cost("m", &u, at("2024-06-01")).unwrap().usd(), 5.0);
    assert_eq!(
        p.cost("m", &u, at("2024-09-30T23:59:59Z")).unwrap().usd(),
        5.0
    );
    assert_eq!(
        p.cost("m", &u, at("2024-10-01")).unwrap().usd(),
        4.0,
        "exactly at since: new price, tier"
    );
    assert!(matches!(
        p.cost("m", &u, at("2024-01-01")),
        Err(Error::UnknownModel { .. })
    ));
    let small = Usage {
        input_tokens: 1000,
        output_tokens: 1000,
        ..Usage::default()
    };
    // At exactly the threshold the tier does not apply (strictly above).
    assert_eq!(
        p.cost("m", &small, None).unwrap().total_picousd,
        1000 * 2_500_000 + 1000 * 10_000_000
    );
    // Latest entry without a timestamp.
    assert_eq!(p.compute_cost("m", 1_000_000, 0).unwrap(), 4.0);
    // Built-in history: gpt-4o's launch price, then its later one.
    let b = Pricing::builtin();
    assert_eq!(b.cost("gpt-4o", &u, at("2024-06-15")).unwrap().usd(), 5.0);
    assert_eq!(b.cost("gpt-4o", &u, at("2025-03-01")).unwrap().usd(), 2.5);
}

#[test]
fn bad_tables_name_the_model_and_key() {
    for (json, model, key) in [
        (r#"{"m": {"output": 1}}"#, "m", "input"),
        (
            r#"{"m": {"input": 1, "output": 2, "ouput": 3}}"#,
            "m",
            "ouput",
        ),
        (r#"{"m": {"input": 1, "output": -2}}"#, "m", "output"),
        (r#"{"m": {"input": 1, "output": "2"}}"#, "m", "output"),
        (r#"{"m": {"input": 1, "output": null}}"#, "m", "output"),
        (r#"{"m": {"input": 1e400, "output": 2}}"#, "", ""),
        (
            r#"{"m": {"input": 1, "output": 2, "tiers": [{"above_input_tokens": 9, "input": 2}, {"above_input_tokens": 3, "input": 1}]}}"#,
            "m",
            "tiers",
        ),
        (
            r#"{"m": {"input": 1, "output": 2, "tiers": [{"input": 2}]}}"#,
            "m",
            "above_input_tokens",
        ),
        (
            r#"{"m": {"input_cost_per_token": -1e-6, "output_cost_per_token": 1e-6}}"#,
            "m",
            "input_cost_per_token",
        ),
        (r#"[1, 2]"#, "", ""),
    ] {
        match Pricing::from_json_str(json) {
            Err(Error::Pricing {
                model: m,
                key: k,
                reason,
            }) => {
                assert_eq!((m.as_str(), k.as_str()), (model, key), "{json}: {reason}");
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}
