//! `agentobs import`: JSONL records from a file or stdin; each rejected line on stderr.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;

use agentobs::ImportOptions;
use indicatif::{ProgressBar, ProgressStyle};

use super::{escape, Cli, CliResult, Failure};

/// Files above this size get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSONL file, or - for standard input.
    file: PathBuf,
    /// All or nothing: if any line is bad, nothing is imported.
    #[arg(long)]
    strict: bool,
}

pub fn run(cli: &Cli, args: &Args) -> CliResult {
    let pipeline = cli.open()?;
    let (input, size): (Box<dyn BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file).map_err(|e| Failure {
            code: 1,
            message: format!("{}: {e}", args.file.display()),
        })?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), size)
    };
    let bar = match size {
        Some(n) if n >= PROGRESS_MIN_BYTES && io::stderr().is_terminal() => ProgressBar::new(n)
            .with_style(
                ProgressStyle::with_template(
                    "importing [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
        _ => ProgressBar::hidden(),
    };
    let options = ImportOptions {
        strict: args.strict,
        ..ImportOptions::default()
    };
    let mut stderr = io::stderr();
    let report = pipeline.import_jsonl(
        input,
        &options,
        |line, e| {
            bar.suspend(|| {
                let _ = writeln!(stderr, "line {line}: {}", escape::text(&e.to_string()));
            })
        },
        |bytes| bar.set_position(bytes),
    )?;
    bar.finish_and_clear();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} lines: {} runs, {} LLM calls, {} tool calls, {} alerts imported; {} duplicates skipped; {} rejected{}",
        report.lines,
        report.runs,
        report.llm_calls,
        report.tool_calls,
        report.alerts,
        report.duplicates,
        report.rejected,
        if args.strict && report.rejected > 0 { " (strict: nothing imported)" } else { "" }
    )?;
    if report.rejected > 0 {
        return Err(Failure {
            code: 1,
            message: format!("{} line(s) rejected", report.rejected),
        });
    }
    Ok(())
}
