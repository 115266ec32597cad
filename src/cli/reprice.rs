//! `agentobs reprice`: recompute stored costs from the current `--pricing` table.

use std::io::Write;

use agentobs::{format_picousd, RepriceScope};

use super::{parse_time_arg, Cli, CliResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Every call in the time range, not only the unpriced ones.
    #[arg(long)]
    all: bool,
    /// Also replace costs that were recorded explicitly (`cost_source = 'given'`).
    #[arg(long)]
    include_given: bool,
    /// Calls at or after this time (RFC 3339 or epoch seconds).
    #[arg(long, value_parser = parse_time_arg)]
    since: Option<f64>,
    /// Calls before this time.
    #[arg(long, value_parser = parse_time_arg)]
    until: Option<f64>,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    let started = std::time::Instant::now();
    let report = pipeline.reprice(&RepriceScope {
        all: args.all,
        include_given: args.include_given,
        since: args.since,
        until: args.until,
        ..RepriceScope::default()
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} of {} calls re-priced in {:.1} s; {} still unpriced",
        report.changed,
        report.examined,
        started.elapsed().as_secs_f64(),
        report.still_unpriced
    )?;
    writeln!(
        out,
        "total cost of those calls: {} USD before, {} USD after",
        format_picousd(report.before_picousd, 6),
        format_picousd(report.after_picousd, 6)
    )?;
    Ok(())
}
