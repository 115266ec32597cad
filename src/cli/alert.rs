//! `agentobs alert set|list|rm` (rules) and `agentobs alerts` (what fired).

use std::io::Write;

use super::{escape, output, Cli, CliResult};

#[derive(Debug, clap::Args)]
pub struct AlertArgs {
    #[command(subcommand)]
    command: AlertCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AlertCommand {
    /// Set (or replace) the rule for METRIC: fire when a run's value goes strictly above
    /// THRESHOLD. Metrics: cost_usd, error_rate, tokens, llm_calls, llm_latency_ms.
    Set {
        metric: String,
        threshold: f64,
        /// For error_rate: wait until the run has this many tool calls.
        #[arg(long, default_value_t = 0)]
        min_calls: i64,
    },
    /// List the rules in force.
    List,
    /// Remove the rule for METRIC.
    Rm { metric: String },
}

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Only alerts of this run.
    #[arg(long)]
    run: Option<String>,
    /// Only alerts of this metric.
    #[arg(long)]
    metric: Option<String>,
    /// Fired at or after this time (RFC 3339 or epoch seconds).
    #[arg(long, value_parser = super::parse_time_arg)]
    since: Option<f64>,
    /// Fired before this time.
    #[arg(long, value_parser = super::parse_time_arg)]
    until: Option<f64>,
}

pub fn run_alert(cli: &Cli, args: &AlertArgs) -> CliResult {
    let pipeline = cli.open()?;
    let mut out = output(&None)?;
    match &args.command {
        AlertCommand::Set {
            metric,
            threshold,
            min_calls,
        } => {
            let rule = pipeline.set_alert_with(metric, *threshold, *min_calls)?;
            writeln!(
                out,
                "alert set: {} > {}{}",
                rule.metric,
                rule.threshold,
                min_text(rule.min_calls)
            )?;
        }
        AlertCommand::List => {
            for rule in pipeline.alert_rules()? {
                writeln!(
                    out,
                    "{} > {}{}",
                    rule.metric,
                    rule.threshold,
                    min_text(rule.min_calls)
                )?;
            }
        }
        AlertCommand::Rm { metric } => {
            if !pipeline.remove_alert(metric)? {
                return Err(super::Failure {
                    code: 1,
                    message: format!("no alert rule for {metric}"),
                });
            }
            writeln!(out, "alert removed: {metric}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn min_text(min_calls: i64) -> String {
    if min_calls > 0 {
        format!(" (after {min_calls} tool calls)")
    } else {
        String::new()
    }
}

pub fn run_alerts(cli: &Cli, args: &AlertsArgs) -> CliResult {
    let pipeline = cli.open()?;
    let mut out = output(&None)?;
    let filter = agentobs::AlertFilter {
        run_id: args.run.clone(),
        metric: args.metric.clone(),
        since: args.since,
        until: args.until,
    };
    for a in pipeline.alerts(&filter)? {
        writeln!(
            out,
            "{}  {}  {} = {} > {}  (call {})",
            super::report::format_time(a.fired_at),
            escape::text(&a.run_id),
            a.metric,
            a.value,
            a.threshold,
            escape::text(&a.call_id)
        )?;
    }
    out.flush()?;
    Ok(())
}
