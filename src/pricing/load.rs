//! Loading price tables: format detection, the native and LiteLLM formats, exact decimal scaling.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{LoadReport, PriceEntry, Rates, Tier};
use crate::error::{Error, Result};
use crate::record::parse_time;

/// Pico-dollars per token in one USD per 1M tokens (the native format's unit).
const PER_MILLION_SCALE: u32 = 6;
/// Pico-dollars per token in one USD per token (LiteLLM's unit).
const PER_TOKEN_SCALE: u32 = 12;

const NATIVE_KEYS: &[&str] = &[
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
    "tiers",
    "since",
];
const TIER_KEYS: &[&str] = &[
    "above_input_tokens",
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

type Models = HashMap<String, Vec<PriceEntry>>;

fn err(model: &str, key: &str, reason: impl Into<String>) -> Error {
    Error::Pricing {
        model: model.to_string(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn parse(json: &str) -> Result<(Models, LoadReport)> {
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let root: Value =
        serde_json::from_str(json).map_err(|e| err("", "", format!("not valid JSON: {e}")))?;
    let Value::Object(root) = root else {
        return Err(err(
            "",
            "",
            "the table must be a JSON object of model names",
        ));
    };
    let is_litellm = root.iter().any(|(name, v)| {
        name == "sample_spec"
            || v.as_object().is_some_and(|o| {
                o.keys()
                    .any(|k| k.ends_with("_cost_per_token") || k == "cache_read_input_token_cost")
            })
    });
    if is_litellm {
        parse_litellm(&root)
    } else {
        parse_native(&root)
    }
}

/// Scales a decimal price to integer pico-dollars: `value × 10^scale`, rounding the digits
/// beyond half-even. Returns the value and whether it was rounded.
fn scale_price(model: &str, key: &str, v: &Value, scale: u32) -> Result<(i64, bool)> {
    let Some(x) = v.as_f64() else {
        return Err(err(model, key, format!("price must be a number, got {v}")));
    };
    if !x.is_finite() {
        return Err(err(model, key, format!("price must be finite, got {x}")));
    }
    if x < 0.0 {
        return Err(err(
            model,
            key,
            format!("price cannot be negative, got {x}"),
        ));
    }
    scale_decimal(x, scale).ok_or_else(|| err(model, key, format!("price {x} is too large")))
}

/// `x × 10^scale` from `x`'s shortest decimal text, rounded half-even to an integer.
pub(crate) fn scale_decimal(x: f64, scale: u32) -> Option<(i64, bool)> {
    // Rust's `Display` for f64 prints the shortest text that parses back to `x`, never in
    // exponent form: "0.0000025" for 2.5e-6.
    let text = format!("{}", x.abs());
    let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
    let scale = scale as usize;
    let (kept, dropped) = if frac_part.len() > scale {
        frac_part.split_at(scale)
    } else {
        (frac_part, "")
    };
    let mut value: i128 = 0;
    for c in int_part.bytes().chain(kept.bytes()) {
        value = value.checked_mul(10)?.checked_add((c - b'0') as i128)?;
    }
    for _ in kept.len()..scale {
        value = value.checked_mul(10)?;
    }
    let rounded = dropped.bytes().any(|c| c != b'0');
    if rounded {
        let first = dropped.as_bytes()[0] - b'0';
        let rest_nonzero = dropped.bytes().skip(1).any(|c| c != b'0');
        let round_up = first > 5 || (first == 5 && (rest_nonzero || value % 2 == 1));
        if round_up {
            value += 1;
        }
    }
    let value = i64::try_from(value).ok()?;
    Some((if x < 0.0 { -value } else { value }, rounded))
}

struct Scaler<'a> {
    model: &'a str,
    scale: u32,
    rounded: &'a mut usize,
}

impl Scaler<'_> {
    fn price(&mut self, key: &str, v: &Value) -> Result<i64> {
        let (p, was_rounded) = scale_price(self.model, key, v, self.scale)?;
        *self.rounded += usize::from(was_rounded);
        Ok(p)
    }

    fn opt(&mut self, obj: &Map<String, Value>, key: &str) -> Result<Option<i64>> {
        obj.get(key).map(|v| self.price(key, v)).transpose()
    }
}

fn parse_native(root: &Map<String, Value>) -> Result<(Models, LoadReport)> {
    let mut rounded = 0;
    let mut models = Models::new();
    for (model, v) in root {
        if model.is_empty() {
            return Err(err(model, "", "model name cannot be empty"));
        }
        let mut s = Scaler {
            model,
            scale: PER_MILLION_SCALE,
            rounded: &mut rounded,
        };
        let entries = match v {
            Value::Object(o) => vec![native_entry(&mut s, o, false)?],
            Value::Array(list) => {
                if list.is_empty() {
                    return Err(err(model, "", "price history list is empty"));
                }
                let mut entries = Vec::with_capacity(list.len());
                for item in list {
                    let Value::Object(o) = item else {
                        return Err(err(model, "", "price history entries must be objects"));
                    };
                    entries.push(native_entry(&mut s, o, true)?);
                }
                check_history(model, &entries)?;
                entries
            }
            other => {
                return Err(err(
                    model,
                    "",
                    format!("expected a price object or a list of them, got {other}"),
                ))
            }
        };
        models.insert(model.clone(), entries);
    }
    let report = LoadReport {
        format: "native",
        models: models.len(),
        rounded_prices: rounded,
        skipped: Vec::new(),
    };
    Ok((models, report))
}

fn check_history(model: &str, entries: &[PriceEntry]) -> Result<()> {
    for (i, pair) in entries.windows(2).enumerate() {
        match (pair[0].since, pair[1].since) {
            (_, None) => {
                return Err(err(
                    model,
                    "since",
                    format!(
                        "history entry {} has no \"since\" (only the first may omit it)",
                        i + 2
                    ),
                ))
            }
            (Some(a), Some(b)) if b == a => {
                return Err(err(
                    model,
                    "since",
                    "two history entries have the same \"since\"",
                ))
            }
            (Some(a), Some(b)) if b < a => {
                return Err(err(
                    model,
                    "since",
                    "history entries must be in ascending \"since\" order",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn native_entry(s: &mut Scaler, o: &Map<String, Value>, history: bool) -> Result<PriceEntry> {
    for key in o.keys() {
        if !NATIVE_KEYS.contains(&key.as_str()) {
            return Err(err(
                s.model,
                key,
                format!("unknown key; expected one of {}", NATIVE_KEYS.join(", ")),
            ));
        }
    }
    let required = |s: &mut Scaler, key: &str| -> Result<i64> {
        match o.get(key) {
            Some(v) => s.price(key, v),
            None => Err(err(s.model, key, "missing required price")),
        }
    };
    let base = Rates {
        input: required(s, "input")?,
        output: required(s, "output")?,
        cached_input: s.opt(o, "cached_input")?,
        cache_write: s.opt(o, "cache_write")?,
        reasoning: s.opt(o, "reasoning")?,
    };
    let since = match o.get("since") {
        None => None,
        Some(_) if !history => {
            return Err(err(
                s.model,
                "since",
                "\"since\" belongs in a price history list",
            ))
        }
        Some(Value::String(t)) => Some(
            parse_time(t)
                .map_err(|reason| err(s.model, "since", reason))?
                .floor() as i64,
        ),
        Some(other) => {
            return Err(err(
                s.model,
                "since",
                format!("expected an RFC 3339 date or time, got {other}"),
            ))
        }
    };
    let mut tiers = Vec::new();
    if let Some(t) = o.get("tiers") {
        let Value::Array(list) = t else {
            return Err(err(s.model, "tiers", "expected a list of tiers"));
        };
        for item in list {
            let Value::Object(t) = item else {
                return Err(err(s.model, "tiers", "each tier must be an object"));
            };
            for key in t.keys() {
                if !TIER_KEYS.contains(&key.as_str()) {
                    return Err(err(
                        s.model,
                        key,
                        format!("unknown tier key; expected one of {}", TIER_KEYS.join(", ")),
                    ));
                }
            }
            let above = match t.get("above_input_tokens") {
                Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    err(
                        s.model,
                        "above_input_tokens",
                        format!("expected a token count, got {v}"),
                    )
                })?,
                None => return Err(err(s.model, "above_input_tokens", "missing in a tier")),
            };
            tiers.push(Tier {
                above_input_tokens: above,
                input: s.opt(t, "input")?,
                output: s.opt(t, "output")?,
                cached_input: s.opt(t, "cached_input")?,
                cache_write: s.opt(t, "cache_write")?,
                reasoning: s.opt(t, "reasoning")?,
            });
        }
        check_tiers(s.model, &tiers)?;
    }
    Ok(PriceEntry { since, base, tiers })
}

fn check_tiers(model: &str, tiers: &[Tier]) -> Result<()> {
    if tiers
        .windows(2)
        .any(|w| w[1].above_input_tokens <= w[0].above_input_tokens)
    {
        return Err(err(
            model,
            "tiers",
            "tiers must be in strictly ascending above_input_tokens order",
        ));
    }
    Ok(())
}

fn parse_litellm(root: &Map<String, Value>) -> Result<(Models, LoadReport)> {
    let mut rounded = 0;
    let mut models = Models::new();
    let mut skipped = Vec::new();
    for (model, v) in root {
        if model == "sample_spec" {
            continue;
        }
        let Value::Object(o) = v else {
            return Err(err(model, "", "expected an object"));
        };
        let mut s = Scaler {
            model,
            scale: PER_TOKEN_SCALE,
            rounded: &mut rounded,
        };
        let input = s.opt(o, "input_cost_per_token")?;
        let output = s.opt(o, "output_cost_per_token")?;
        if input.is_none() && output.is_none() {
            let priced: Vec<&str> = o
                .keys()
                .filter(|k| k.contains("cost"))
                .map(String::as_str)
                .collect();
            if !priced.is_empty() {
                skipped.push((
                    model.clone(),
                    format!("no per-token price, only {}", priced.join(", ")),
                ));
            }
            continue;
        }
        let base = Rates {
            // A table that prices only one side (embeddings) bills the other at zero, as LiteLLM does.
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
            cached_input: s.opt(o, "cache_read_input_token_cost")?,
            cache_write: s.opt(o, "cache_creation_input_token_cost")?,
            reasoning: s.opt(o, "output_cost_per_reasoning_token")?,
        };
        let mut thresholds: Vec<i64> = o.keys().filter_map(|k| litellm_tier_threshold(k)).collect();
        thresholds.sort_unstable();
        thresholds.dedup();
        let mut tiers = Vec::new();
        for above in thresholds {
            let key = |prefix: &str| format!("{prefix}_above_{}k_tokens", above / 1000);
            tiers.push(Tier {
                above_input_tokens: above,
                input: s.opt(o, &key("input_cost_per_token"))?,
                output: s.opt(o, &key("output_cost_per_token"))?,
                cached_input: s.opt(o, &key("cache_read_input_token_cost"))?,
                cache_write: s.opt(o, &key("cache_creation_input_token_cost"))?,
                reasoning: None,
            });
        }
        models.insert(
            model.clone(),
            vec![PriceEntry {
                since: None,
                base,
                tiers,
            }],
        );
    }
    let report = LoadReport {
        format: "litellm",
        models: models.len(),
        rounded_prices: rounded,
        skipped,
    };
    Ok((models, report))
}

/// `input_cost_per_token_above_200k_tokens` → 200000 (service-tier variants such as
/// `..._tokens_priority` are not the standard price and are not read).
fn litellm_tier_threshold(key: &str) -> Option<i64> {
    let rest = [
        "input_cost_per_token_above_",
        "output_cost_per_token_above_",
        "cache_read_input_token_cost_above_",
        "cache_creation_input_token_cost_above_",
    ]
    .iter()
    .find_map(|p| key.strip_prefix(p))?;
    let n = rest.strip_suffix("k_tokens")?;
    n.parse::<i64>().ok().map(|k| k * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_is_decimal_exact() {
        assert_eq!(scale_decimal(2.5, 6), Some((2_500_000, false)));
        assert_eq!(scale_decimal(0.000001, 6), Some((1, false)));
        assert_eq!(scale_decimal(2.5e-6, 12), Some((2_500_000, false)));
        assert_eq!(scale_decimal(1.1e-7, 12), Some((110_000, false)));
        // Half-even on the first dropped digit.
        assert_eq!(scale_decimal(0.0000005, 6), Some((0, true)));
        assert_eq!(scale_decimal(0.0000015, 6), Some((2, true)));
        assert_eq!(scale_decimal(0.0000025, 6), Some((2, true)));
        assert_eq!(scale_decimal(0.00000251, 6), Some((3, true)));
        assert_eq!(scale_decimal(1e300, 6), None);
    }

    #[test]
    fn bad_tables_name_model_and_key() {
        let cases = [
            (r#"{"m": {"input": 1}}"#, "m", "output"),
            (r#"{"m": {"input": 1, "ouput": 2}}"#, "m", "ouput"),
            (r#"{"m": {"input": -1, "output": 2}}"#, "m", "input"),
            (r#"{"m": {"input": "1", "output": 2}}"#, "m", "input"),
            (
                r#"{"m": {"input": 1, "output": 2, "tiers": [{"above_input_tokens": 5}, {"above_input_tokens": 5}]}}"#,
                "m",
                "tiers",
            ),
            (
                r#"{"m": [{"since": "2024-02-01", "input": 1, "output": 2}, {"since": "2024-01-01", "input": 1, "output": 2}]}"#,
                "m",
                "since",
            ),
            (
                r#"{"m": [{"since": "2024-01-01", "input": 1, "output": 2}, {"since": "2024-01-01", "input": 1, "output": 2}]}"#,
                "m",
                "since",
            ),
            (
                r#"{"m": [{"since": "yesterday", "input": 1, "output": 2}]}"#,
                "m",
                "since",
            ),
        ];
        for (json, model, key) in cases {
            match parse(json) {
                Err(Error::Pricing {
                    model: m, key: k, ..
                }) => {
                    assert_eq!((m.as_str(), k.as_str()), (model, key), "{json}")
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn litellm_tiers_and_skips() {
        let (models, report) = parse(
            r#"{"a": {"input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5,
                      "input_cost_per_token_above_200k_tokens": 6e-6,
                      "input_cost_per_token_above_200k_tokens_priority": 9e-6},
                "img": {"output_cost_per_image": 0.04}}"#,
        )
        .unwrap();
        assert_eq!(report.format, "litellm");
        assert_eq!(report.skipped.len(), 1);
        let a = &models["a"][0];
        assert_eq!(a.base.input, 3_000_000);
        assert_eq!(a.tiers.len(), 1);
        assert_eq!(a.tiers[0].above_input_tokens, 200_000);
        assert_eq!(a.tiers[0].input, Some(6_000_000));
    }
}
