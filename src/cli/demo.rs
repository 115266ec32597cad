//! `agentobs demo`: fill the database with simulated agent runs, then print the dashboard.

use std::io::Write;

use agentobs::simulate::{simulate, SimulationOptions};
use agentobs::DashboardFilter;
use indicatif::{ProgressBar, ProgressStyle};

use super::report::{render, Format};
use super::{output, Cli, CliResult};

/// The cost rule the demo sets on a file without rules: a run above 5 USD is a runaway.
const DEFAULT_COST_ALERT_USD: f64 = 5.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of runs to simulate.
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    if pipeline.alert_rules()?.is_empty() {
        pipeline.set_alert("cost_usd", DEFAULT_COST_ALERT_USD)?;
        eprintln!(
            "no alert rules in {}: set cost_usd > {DEFAULT_COST_ALERT_USD}",
            cli.db.display()
        );
    }
    // Never overwrite: a second demo with the same seed appends a new batch of run ids.
    let mut options = SimulationOptions::new(args.runs, args.seed);
    let base = options.run_id_prefix.clone();
    let mut batch = 0;
    while pipeline
        .run(&format!("{}-{:06}", options.run_id_prefix, 0))?
        .is_some()
    {
        batch += 1;
        options.run_id_prefix = format!("{base}-b{batch}");
        options.seed = args.seed.wrapping_add(batch);
    }
    let bar = ProgressBar::new(args.runs as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} runs ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("simulating");
    let started = std::time::Instant::now();
    let fired = simulate(&pipeline, &options, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} runs to {} in {:.1} s ({fired} alerts fired)",
        args.runs,
        cli.db.display(),
        started.elapsed().as_secs_f64()
    );
    let filter = DashboardFilter::default();
    let dashboard = pipeline.dashboard(&filter)?;
    let mut out = output(&None)?;
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    render(&mut out, Format::Text, &dashboard, &filter, colour)?;
    out.flush()?;
    Ok(())
}
