//! `agentobs cost`: price one call from the table, exactly, with its breakdown.

use std::io::Write;

use agentobs::{format_picousd, Usage};

use super::{output, Cli, CliResult};

#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Prices: --pricing FILE, else the built-in table (see `agentobs --version` for its date)."
))]
pub struct Args {
    /// Model name (provider prefixes and date suffixes are resolved).
    model: String,
    /// All input tokens, including cached and cache-write tokens.
    input_tokens: i64,
    /// All output tokens, including reasoning tokens.
    output_tokens: i64,
    /// Input tokens read from the prompt cache.
    #[arg(long, default_value_t = 0)]
    cached_input: i64,
    /// Input tokens written to the prompt cache.
    #[arg(long, default_value_t = 0)]
    cache_write: i64,
    /// Output tokens spent on reasoning.
    #[arg(long, default_value_t = 0)]
    reasoning: i64,
    /// Price at this time (RFC 3339 or epoch seconds) instead of the latest price.
    #[arg(long, value_parser = super::parse_time_arg)]
    at: Option<f64>,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pricing = cli.load_pricing()?;
    let usage = Usage {
        input_tokens: args.input_tokens,
        output_tokens: args.output_tokens,
        cached_input_tokens: args.cached_input,
        cache_write_tokens: args.cache_write,
        reasoning_tokens: args.reasoning,
    };
    let cost = pricing.cost(&args.model, &usage, args.at)?;
    let resolved = pricing.resolve(&args.model).unwrap_or(&args.model);
    let mut out = output(&None)?;
    let usd = |p: i64| format_picousd(p as i128, 6);
    writeln!(out, "{}", usd(cost.total_picousd))?;
    writeln!(out, "  model           {}", super::escape::text(resolved))?;
    writeln!(
        out,
        "  uncached input  {}",
        usd(cost.uncached_input_picousd)
    )?;
    writeln!(out, "  cached input    {}", usd(cost.cached_input_picousd))?;
    writeln!(out, "  cache write     {}", usd(cost.cache_write_picousd))?;
    writeln!(out, "  output          {}", usd(cost.output_picousd))?;
    writeln!(out, "  reasoning       {}", usd(cost.reasoning_picousd))?;
    writeln!(
        out,
        "  exact           {}",
        format_picousd(cost.total_picousd as i128, 12)
    )?;
    out.flush()?;
    Ok(())
}
