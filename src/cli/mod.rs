//! Command-line parsing, dispatch and the pieces every subcommand shares (opening the database,
//! writing output safely, exit codes). One file per subcommand, each with its args and `run`.

mod alert;
mod cost;
mod demo;
mod escape;
mod export;
mod import;
mod report;
mod reprice;
mod runs;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agentobs::{Pipeline, Pricing};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Global options.
#[derive(Debug, Parser)]
#[command(
    name = "agentobs",
    about = "An embedded observability and cost ledger for AI agents"
)]
pub struct Cli {
    /// The database file.
    #[arg(
        long,
        global = true,
        env = "AGENTOBS_DB",
        default_value = "agentobs.db"
    )]
    pub db: PathBuf,
    /// A pricing table (native per-1M JSON or LiteLLM's table); default: the built-in table.
    #[arg(long, global = true)]
    pub pricing: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill the database with simulated agent runs, then print the dashboard.
    Demo(demo::Args),
    /// The dashboard report (text, json, markdown, html).
    Report(report::Args),
    /// List runs with their rollups, newest first.
    Runs(runs::Args),
    /// Export runs as JSONL (one record per line).
    Export(export::Args),
    /// Import JSONL records (a file, or - for stdin).
    Import(import::Args),
    /// Recompute stored costs from the current pricing table.
    Reprice(reprice::Args),
    /// Price one LLM call (6 decimals and the breakdown).
    Cost(cost::Args),
    /// Manage alert rules.
    Alert(alert::AlertArgs),
    /// List fired alerts.
    Alerts(alert::AlertsArgs),
}

/// A failure to report: the message goes to stderr, the code is the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<agentobs::Error> for Failure {
    fn from(e: agentobs::Error) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

pub type CliResult = Result<(), Failure>;

fn version_text() -> String {
    format!(
        "{} (built-in prices as of {}, from the {})",
        env!("CARGO_PKG_VERSION"),
        agentobs::BUILTIN_AS_OF,
        agentobs::BUILTIN_SOURCE
    )
}

pub fn main() -> ExitCode {
    // Leaked once per process: clap wants a static string for the version.
    let version: &'static str = Box::leak(version_text().into_boxed_str());
    let command = Cli::command().version(version);
    let matches = match command.try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // --help and --version are not errors; clap picks the stream and the code.
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // `agentobs export … | head` closing the pipe early is not a failure.
        Err(f) if f.message.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(f) => {
            let _ = writeln!(io::stderr(), "agentobs: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> CliResult {
    match &cli.command {
        Command::Demo(a) => demo::run(&cli, a),
        Command::Report(a) => report::run(&cli, a),
        Command::Runs(a) => runs::run(&cli, a),
        Command::Cost(a) => cost::run(&cli, a),
        Command::Reprice(a) => reprice::run(&cli, a),
        Command::Export(a) => export::run(&cli, a),
        Command::Import(a) => import::run(&cli, a),
        Command::Alert(a) => alert::run_alert(&cli, a),
        Command::Alerts(a) => alert::run_alerts(&cli, a),
    }
}

impl Cli {
    /// The pricing table chosen by `--pricing`, else the built-in one.
    pub fn load_pricing(&self) -> Result<Pricing, Failure> {
        match &self.pricing {
            Some(p) => Pricing::from_path(p).map_err(|e| Failure {
                code: 1,
                message: format!("{}: {e}", p.display()),
            }),
            None => Ok(Pricing::builtin()),
        }
    }

    /// Opens the database with the chosen pricing.
    pub fn open(&self) -> Result<Pipeline, Failure> {
        let pricing = self.load_pricing()?;
        Ok(Pipeline::open(&self.db, pricing)?)
    }
}

/// Where a command's main output goes: stdout, or the file of `--out`.
pub fn output(out: &Option<PathBuf>) -> io::Result<Box<dyn Write>> {
    Ok(match out {
        Some(path) => Box::new(io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    })
}

/// Parses a time argument: RFC 3339 (date or date-time) or epoch seconds.
pub fn parse_time_arg(s: &str) -> Result<f64, String> {
    agentobs::parse_time(s)
}
