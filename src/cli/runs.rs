//! `agentobs runs`: the runs with their rollups, newest first.

use std::io::Write;

use super::{escape, output, Cli, CliResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only runs with this status (running, success, failed, ...).
    #[arg(long)]
    status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON lines (one run summary per line) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    let runs = pipeline.runs(args.status.as_deref(), args.limit)?;
    let mut out = output(&None)?;
    if args.json {
        for r in &runs {
            serde_json::to_writer(&mut out, r).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        out.flush()?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<28} {:<9} {:>6} {:>6} {:>6} {:>10} {:>12} {:>10}",
        "RUN", "STATUS", "LLM", "TOOLS", "ERRORS", "TOKENS", "COST_USD", "DURATION"
    )?;
    for r in &runs {
        let duration = r
            .duration_ms
            .map(|d| format!("{:.1}s", d / 1000.0))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<28} {:<9} {:>6} {:>6} {:>6} {:>10} {:>12} {:>10}{}",
            escape::truncate(&escape::text(&r.run_id), 28),
            escape::truncate(&escape::text(&r.status), 9),
            r.llm_calls,
            r.tool_calls,
            r.tool_errors,
            r.input_tokens as i128 + r.output_tokens as i128,
            agentobs::format_picousd(r.cost_picousd as i128, 6),
            duration,
            if r.unpriced_calls > 0 {
                format!("  ({} unpriced)", r.unpriced_calls)
            } else {
                String::new()
            }
        )?;
    }
    out.flush()?;
    Ok(())
}
