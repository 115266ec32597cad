#!/usr/bin/env python3
"""Regenerates src/pricing/builtin.json (the built-in table, native format, USD per 1M tokens)
from LiteLLM's table (../shared/pricing/litellm_model_prices.json), plus the public price history
that table does not carry. Run from the project root; review the diff; bump BUILTIN_AS_OF."""
import json
from decimal import Decimal

SRC = "../shared/pricing/litellm_model_prices.json"
# (name in our table, key in LiteLLM's table)
MODELS = [
    ("gpt-4o-mini", "gpt-4o-mini"), ("gpt-4.1", "gpt-4.1"), ("gpt-4.1-mini", "gpt-4.1-mini"),
    ("gpt-4.1-nano", "gpt-4.1-nano"), ("o1", "o1"), ("o1-pro", "o1-pro"), ("o3-mini", "o3-mini"),
    ("o4-mini", "o4-mini"), ("gpt-5", "gpt-5"), ("gpt-5-mini", "gpt-5-mini"),
    ("gpt-5-nano", "gpt-5-nano"), ("gpt-5.1", "gpt-5.1"), ("gpt-4-turbo", "gpt-4-turbo"),
    ("gpt-3.5-turbo", "gpt-3.5-turbo"),
    ("claude-opus-4-5", "claude-opus-4-5"), ("claude-opus-4-6", "claude-opus-4-6"),
    ("claude-opus-4-7", "claude-opus-4-7"), ("claude-opus-5", "claude-opus-5"),
    ("claude-sonnet-4-6", "claude-sonnet-4-6"), ("claude-sonnet-5", "claude-sonnet-5"),
    ("claude-haiku-4-5", "claude-haiku-4-5"), ("claude-haiku-5-5", "claude-haiku-5-5"),
    ("gemini-2.5-pro", "gemini-2.5-pro"), ("gemini-2.5-flash", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"), ("gemini-3-flash-preview", "gemini-3-flash-preview"),
    ("gemini-3.1-pro-preview", "gemini-3.1-pro-preview"), ("gemini-3.1-flash-lite", "gemini-3.1-flash-lite"),
    ("gemini-3.5-flash", "gemini-3.5-flash"),
    ("mistral-large-latest", "mistral/mistral-large-latest"),
    ("mistral-medium-latest", "mistral/mistral-medium-latest"),
    ("mistral-small-latest", "mistral/mistral-small-latest"),
    ("codestral-latest", "mistral/codestral-latest"), ("open-mistral-nemo", "mistral/open-mistral-nemo"),
    ("magistral-medium-latest", "mistral/magistral-medium-latest"),
    ("deepseek-chat", "deepseek/deepseek-chat"), ("deepseek-reasoner", "deepseek/deepseek-reasoner"),
    ("deepseek-v3.2", "deepseek/deepseek-v3.2"), ("deepseek-r1", "deepseek/deepseek-r1"),
    ("Llama-3.3-70B-Instruct-Turbo", "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    ("meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0"),
    ("llama-4-maverick-17b-128e-instruct-maas", "vertex_ai/meta/llama-4-maverick-17b-128e-instruct-maas"),
    ("llama-3.3-70b", "cerebras/llama-3.3-70b"),
]
KEYS = [("input", "input_cost_per_token"), ("output", "output_cost_per_token"),
        ("cached_input", "cache_read_input_token_cost"), ("cache_write", "cache_creation_input_token_cost"),
        ("reasoning", "output_cost_per_reasoning_token")]


def per_million(x):
    d = Decimal(repr(x)) * 1_000_000
    return float(d.normalize()) if d != d.to_integral() else int(d)


def native(v):
    out = {ours: per_million(v[theirs]) for ours, theirs in KEYS if v.get(theirs) is not None}
    tiers = []
    for k in sorted({int(k.split("_above_")[1][:-len("k_tokens")]) for k in v
                     if k.startswith("input_cost_per_token_above_") and k.endswith("k_tokens")}):
        t = {"above_input_tokens": k * 1000}
        for ours, theirs in KEYS[:4]:
            if f"{theirs}_above_{k}k_tokens" in v:
                t[ours] = per_million(v[f"{theirs}_above_{k}k_tokens"])
        tiers.append(t)
    if tiers:
        out["tiers"] = tiers
    return out


table = json.load(open(SRC))
out = {}
for ours, theirs in MODELS:
    out[ours] = native(table[theirs])
# Public price history (provider announcements), newest last.
out["gpt-4o"] = [
    {"since": "2024-05-13", "input": 5.0, "output": 15.0},
    {"since": "2024-10-02", **native(table["gpt-4o"])},
]
out["o3"] = [
    {"since": "2025-04-16", "input": 10.0, "output": 40.0, "cached_input": 2.5},
    {"since": "2025-06-10", **native(table["o3"])},
]
# Claude Sonnet 4.5's long-context tier (as Anthropic lists it; LiteLLM carries it on Bedrock).
out["claude-sonnet-4-5"] = native(table["claude-sonnet-4-5"])
out["claude-sonnet-4-5"]["tiers"] = [{"above_input_tokens": 200000, "input": 6.0, "output": 22.5,
                                      "cached_input": 0.6, "cache_write": 7.5}]
print(json.dumps(dict(sorted(out.items())), indent=1))
