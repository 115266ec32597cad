//! `agentobs export`: one run, or every run in a time range, as JSONL.

use std::io::Write;
use std::path::PathBuf;

use super::{output, parse_time_arg, Cli, CliResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to export.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    run_id: Option<String>,
    /// Export every run (optionally only those started in [--since, --until)).
    #[arg(long)]
    all: bool,
    /// With --all: runs started at or after this time (RFC 3339 or epoch seconds).
    #[arg(long, requires = "all", value_parser = parse_time_arg)]
    since: Option<f64>,
    /// With --all: runs started before this time.
    #[arg(long, requires = "all", value_parser = parse_time_arg)]
    until: Option<f64>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    let mut out = output(&args.out)?;
    match &args.run_id {
        Some(run_id) => pipeline.export_jsonl_to(run_id, &mut out)?,
        None => pipeline.export_all_jsonl_to(args.since, args.until, &mut out)?,
    };
    out.flush().map_err(Failure::from)?;
    Ok(())
}
