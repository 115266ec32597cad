//! Simulated agent runs: the data behind `agentobs demo`, the benchmarks and the tests.
//!
//! Everything goes through the public [`Pipeline`] API, exactly as an instrumented agent would
//! write it. The generator is deterministic for a seed (its own small PRNG, so the data does not
//! change when a dependency does): several agents and environments, a model mix priced from the
//! built-in table plus one model it does not know, log-normal latencies, 5–40 calls per run,
//! about 4% failing tool calls with real-looking error text (multi-line tracebacks, quotes,
//! unicode, several KB), about 8% response-cache hits, prompt-cache tokens, a few runaway runs and
//! a small share of failed runs.

use serde_json::json;

use crate::error::Result;
use crate::record::{LlmCall, Record, ToolCall};
use crate::Pipeline;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulationOptions {
    /// Number of runs.
    pub runs: usize,
    /// Seed: the same seed gives the same records.
    pub seed: u64,
    /// Runs are spread over the 14 days before this time (epoch seconds).
    pub end_at: f64,
    /// Prefix of the run ids; call ids extend the run id.
    pub run_id_prefix: String,
    /// Runs written per transaction (1: each run is one transaction, as a live agent's would be
    /// at the least; more: faster bulk generation for benchmarks).
    pub runs_per_batch: usize,
}

impl SimulationOptions {
    /// `runs` runs for `seed`, ending at 2026-12-01T00:00:00Z, with ids `demo-s{seed}-NNNNNN`.
    pub fn new(runs: usize, seed: u64) -> SimulationOptions {
        SimulationOptions {
            runs,
            seed,
            end_at: 1_796_083_200.0,
            run_id_prefix: format!("demo-s{seed}"),
            runs_per_batch: 1,
        }
    }
}

/// A small, fast, well-mixed PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Log-normal with the given median and shape (sigma of the underlying normal).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box–Muller.
        let u1 = self.f64().max(f64::MIN_POSITIVE);
        let u2 = self.f64();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }
}

/// Models with their share of calls, median latency (ms) and typical prompt size.
const MODELS: &[(&str, f64, f64, i64)] = &[
    ("gpt-4o", 0.22, 900.0, 3_000),
    ("gpt-4o-mini", 0.20, 450.0, 2_000),
    ("claude-sonnet-4-5", 0.18, 1_400.0, 6_000),
    ("claude-haiku-4-5", 0.12, 600.0, 2_500),
    ("gemini-2.5-flash", 0.10, 500.0, 4_000),
    ("gemini-2.5-pro", 0.07, 2_200.0, 12_000),
    ("deepseek-chat", 0.06, 1_100.0, 3_000),
    ("mistral-small-latest", 0.04, 400.0, 1_500),
    // Not in the built-in table: stored unpriced, shown as such.
    ("acme-internal-llm-v2", 0.01, 700.0, 2_000),
];

const TOOLS: &[(&str, f64, f64)] = &[
    ("web_search", 650.0, 0.06),
    ("fetch_url", 420.0, 0.08),
    ("sql_query", 80.0, 0.03),
    ("python_exec", 1_200.0, 0.05),
    ("read_file", 12.0, 0.01),
    ("vector_search", 45.0, 0.02),
    ("send_email", 300.0, 0.02),
];

const AGENTS: &[&str] = &[
    "support-bot",
    "research-agent",
    "code-reviewer",
    "sales-assistant",
];
const ENVS: &[&str] = &["prod", "prod", "prod", "staging"];

fn error_message(rng: &mut Rng, tool: &str) -> String {
    match rng.range(0, 5) {
        0 => {
            let mut tb = String::from("Traceback (most recent call last):\n");
            for i in 0..rng.range(8, 40) {
                tb.push_str(&format!(
                    "  File \"/srv/agent/tools/{tool}.py\", line {}, in step_{i}\n    result = await client.call(payload, timeout=30)\n",
                    100 + i * 7
                ));
            }
            tb.push_str("TimeoutError: upstream did not answer within 30 s — «délai dépassé»");
            tb
        }
        1 => format!(
            "HTTP 429 Too Many Requests: {{\"error\": {{\"message\": \"Rate limit reached for {tool}\", \"type\": \"rate_limit\"}}}}"
        ),
        2 => "psycopg.errors.UndefinedColumn: column \"amount_usd\" does not exist\nLINE 1: SELECT amount_usd FROM orders WHERE id = $1\n               ^".into(),
        3 => "接続がタイムアウトしました (connection timed out) 🔌 after 3 retries".into(),
        4 => "PermissionError: [Errno 13] Permission denied: '/data/reports/Q3 \"final\".xlsx'".into(),
        _ => format!("ValueError: tool '{tool}' returned <html><body>502 Bad Gateway</body></html>"),
    }
}

/// Writes `options.runs` simulated runs into `pipeline`, calling `progress` after each run with
/// the number done. Returns how many alerts fired.
///
/// # Errors
/// The first error the pipeline returns (for example [`crate::Error::RunExists`] when runs with
/// these ids are already in the file).
pub fn simulate(
    pipeline: &Pipeline,
    options: &SimulationOptions,
    mut progress: impl FnMut(usize),
) -> Result<usize> {
    let mut rng = Rng::new(options.seed);
    let span_s = 14.0 * 86_400.0;
    let mut fired = 0;
    let mut batch = Vec::new();
    for i in 0..options.runs {
        let run_id = format!("{}-{i:06}", options.run_id_prefix);
        let started_at = options.end_at - span_s + rng.f64() * span_s;
        let agent = *rng.pick(AGENTS);
        let metadata = json!({
            "agent": agent,
            "env": *rng.pick(ENVS),
            "version": format!("1.{}.{}", rng.range(2, 4), rng.range(0, 9)),
        });
        batch.push(Record::StartRun {
            run_id: run_id.clone(),
            metadata,
            started_at: Some(started_at),
        });

        let runaway = rng.chance(0.004);
        let calls = if runaway {
            rng.range(150, 250)
        } else {
            rng.range(5, 40)
        };
        let mut t = started_at;
        let records = &mut batch;
        let mut tool_failures = 0;
        for step in 0..calls {
            let call_id = format!("{run_id}-{step:03}");
            if step % 2 == 0 || runaway {
                let (model, median, prompt) = pick_model(&mut rng, runaway);
                let latency_ms = rng.log_normal(median, 0.55);
                let input_tokens = (rng.log_normal(prompt as f64, 0.6) as i64).max(50);
                let output_tokens = (rng.log_normal(350.0, 0.7) as i64).max(1);
                let cached_input = rng
                    .chance(0.35)
                    .then(|| input_tokens * rng.range(20, 80) / 100);
                let reasoning = (model.starts_with("gemini-2.5-pro") && rng.chance(0.5))
                    .then(|| output_tokens * rng.range(10, 60) / 100);
                let cached = rng.chance(0.08);
                records.push(Record::Llm(LlmCall {
                    call_id,
                    run_id: run_id.clone(),
                    step,
                    model: model.to_string(),
                    input_tokens,
                    output_tokens,
                    latency_ms: if cached {
                        latency_ms / 40.0
                    } else {
                        latency_ms
                    },
                    timestamp: Some(t),
                    cached,
                    cached_input_tokens: cached_input,
                    reasoning_tokens: reasoning,
                    ..LlmCall::default()
                }));
                t += latency_ms / 1000.0;
            } else {
                let &(tool, median, fail_p) = rng.pick(TOOLS);
                let latency_ms = rng.log_normal(median, 0.8);
                let success = !rng.chance(fail_p * 1.1);
                tool_failures += i32::from(!success);
                records.push(Record::Tool(ToolCall {
                    call_id,
                    run_id: run_id.clone(),
                    step,
                    tool_name: tool.to_string(),
                    latency_ms,
                    success,
                    error: (!success).then(|| error_message(&mut rng, tool)),
                    timestamp: Some(t),
                    metadata: Some(json!({"attempt": 1})),
                }));
                t += latency_ms / 1000.0;
            }
        }
        // A small share of runs is left running, as a live file always has some.
        if !rng.chance(0.01) {
            let status = if runaway || tool_failures >= 3 || rng.chance(0.02) {
                "failed"
            } else if rng.chance(0.01) {
                "cancelled"
            } else {
                "success"
            };
            batch.push(Record::EndRun {
                run_id,
                status: status.to_string(),
                ended_at: Some(t + rng.f64() * 2.0),
            });
        }
        if (i + 1) % options.runs_per_batch.max(1) == 0 || i + 1 == options.runs {
            fired += pipeline
                .record_batch(std::mem::take(&mut batch))?
                .alerts
                .len();
            progress(i + 1);
        }
    }
    Ok(fired)
}

fn pick_model(rng: &mut Rng, runaway: bool) -> (&'static str, f64, i64) {
    if runaway {
        // Runaway loops re-send a growing context to a large model.
        return ("claude-sonnet-4-5", 1_400.0, 40_000);
    }
    let mut x = rng.f64();
    for &(model, share, median, prompt) in MODELS {
        if x < share {
            return (model, median, prompt);
        }
        x -= share;
    }
    let (model, _, median, prompt) = MODELS[0];
    (model, median, prompt)
}
