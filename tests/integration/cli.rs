//! The `agentobs` executable: demo determinism, every report format on empty, tiny and demo
//! data, safe output for hostile strings, exit codes.

use std::path::Path;

use agentobs::{LlmCall, Pipeline, ToolCall};
use rusqlite::Connection;
use serde_json::json;

use crate::util::{agentobs, pricing, stderr, stdout, temp_db};

const FORMATS: [&str; 4] = ["text", "json", "markdown", "html"];

/// The database content without the wall-clock columns (when an alert fired, when a rule was
/// set), which are the only fields a simulation cannot fix in advance.
fn content(path: &Path) -> String {
    let conn = Connection::open(path).unwrap();
    let mut out = String::new();
    for sql in [
        "SELECT * FROM runs ORDER BY run_id",
        "SELECT * FROM llm_calls ORDER BY call_id",
        "SELECT * FROM tool_calls ORDER BY call_id",
        "SELECT * FROM latency_histogram ORDER BY series, key, bucket",
        "SELECT metric, threshold, min_calls FROM alert_rules ORDER BY metric",
        "SELECT run_id, metric, value, threshold, call_id FROM alerts ORDER BY run_id, metric",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                out.push_str(&format!(
                    "{:?}|",
                    r.get::<_, rusqlite::types::Value>(i).unwrap()
                ));
            }
            out.push('\n');
        }
    }
    out
}

fn db_arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn demo_is_deterministic_for_a_seed_and_never_overwrites() {
    let (_a, a) = temp_db();
    let (_b, b) = temp_db();
    for db in [&a, &b] {
        let out = agentobs(&["--db", &db_arg(db), "demo", "--runs", "40", "--seed", "9"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("agentobs report"));
    }
    assert_eq!(content(&a), content(&b));
    // A second demo into the same file adds runs (new ids) and keeps the rules the user set.
    let out = agentobs(&["--db", &db_arg(&a), "alert", "set", "tokens", "1000000"]);
    assert!(out.status.success());
    let out = agentobs(&["--db", &db_arg(&a), "demo", "--runs", "10", "--seed", "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = Pipeline::open(&a, pricing()).unwrap();
    assert_eq!(p.runs(None, 1000).unwrap().len(), 50);
    let rules: Vec<_> = p
        .alert_rules()
        .unwrap()
        .iter()
        .map(|r| r.metric.as_str())
        .collect();
    assert_eq!(rules, ["cost_usd", "tokens"]);
}

/// Checks that every Markdown table has the same number of (unescaped) cells in every row.
fn assert_markdown_tables_parse(md: &str) {
    let cells = |line: &str| {
        let mut n = 0;
        let mut escaped = false;
        for c in line.chars() {
            match c {
                '\\' if !escaped => escaped = true,
                '|' if !escaped => n += 1,
                _ => escaped = false,
            }
            if c != '\\' {
                escaped = false;
            }
        }
        n
    };
    let mut tables = 0;
    for block in md.split("\n\n") {
        let rows: Vec<&str> = block.lines().filter(|l| l.starts_with('|')).collect();
        if rows.is_empty() {
            continue;
        }
        tables += 1;
        assert!(
            rows.len() >= 2 && rows[1].contains("---"),
            "no separator row:\n{block}"
        );
        let width = cells(rows[0]);
        for r in &rows {
            assert_eq!(cells(r), width, "row has another cell count:\n{r}");
        }
    }
    assert!(tables >= 1);
}

fn assert_html_is_self_contained(html: &str) {
    let doc = scraper::Html::parse_document(html);
    assert!(
        doc.errors.is_empty() || doc.errors.iter().all(|e| !e.contains("Unexpected")),
        "{:?}",
        doc.errors
    );
    let svgs = doc
        .select(&scraper::Selector::parse("svg").unwrap())
        .count();
    assert_eq!(svgs, 5, "one <svg> per chart");
    assert_eq!(
        doc.select(&scraper::Selector::parse("script").unwrap())
            .count(),
        0
    );
    let linked: Vec<_> = doc
        .select(&scraper::Selector::parse("[src], [href]").unwrap())
        .collect();
    assert!(linked.is_empty(), "external references: {linked:?}");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("url("));
}

fn check_all_formats(db: &Path) {
    for format in FORMATS {
        let out = agentobs(&["--db", &db_arg(db), "report", "--format", format]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let text = stdout(&out);
        match format {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                for key in [
                    "runs",
                    "runs_by_status",
                    "llm_calls",
                    "tool_calls",
                    "llm_latency_ms",
                    "tool_latency_ms",
                    "run_duration_ms",
                    "avg_cost_usd",
                    "total_cost_usd",
                    "unpriced_calls",
                    "tool_error_rate",
                    "cache_hit_rate",
                    "by_model",
                    "by_tool",
                    "alerts",
                ] {
                    assert!(v.get(key).is_some(), "missing {key}");
                }
            }
            "markdown" => assert_markdown_tables_parse(&text),
            "html" => assert_html_is_self_contained(&text),
            _ => {
                assert!(
                    text.lines().all(|l| l.chars().count() <= 100),
                    "text wider than 100 columns:\n{text}"
                );
                assert!(
                    !text.contains('\x1b'),
                    "colour codes when stdout is not a terminal"
                );
            }
        }
    }
}

#[test]
fn every_format_renders_empty_tiny_and_demo_data() {
    let (_d, db) = temp_db();
    drop(Pipeline::open(&db, pricing()).unwrap());
    check_all_formats(&db);
    let p = Pipeline::open(&db, pricing()).unwrap();
    p.record_llm_call(crate::util::llm("c1", "one", 10, 10))
        .unwrap();
    drop(p);
    check_all_formats(&db);
    assert!(agentobs(&["--db", &db_arg(&db), "demo", "--runs", "60"])
        .status
        .success());
    check_all_formats(&db);
}

#[test]
fn recorded_strings_cannot_break_out_of_any_format() {
    let (_d, db) = temp_db();
    let p = Pipeline::open(&db, pricing()).unwrap();
    let evil = "<script>alert(1)</script> | col \n# heading \x1b[31mred\x1b[0m";
    p.record_llm_call(LlmCall {
        model: evil.into(),
        ..crate::util::llm("c1", evil, 10, 10)
    })
    .unwrap();
    p.record_tool_call(ToolCall {
        tool_name: evil.into(),
        error: Some(evil.into()),
        ..crate::util::tool("t1", evil, false)
    })
    .unwrap();
    p.set_alert("llm_calls", 0.0).unwrap();
    p.record_llm_call(crate::util::llm("c2", evil, 1, 1))
        .unwrap();
    p.record_tool_call(ToolCall {
        tool_name: "t\x1b[2J\nx".into(),
        ..crate::util::tool("t2", "r2", true)
    })
    .unwrap();
    drop(p);
    check_all_formats(&db);
    let html = stdout(&agentobs(&[
        "--db",
        &db_arg(&db),
        "report",
        "--format",
        "html",
    ]));
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    let text = stdout(&agentobs(&["--db", &db_arg(&db), "report"]));
    assert!(
        !text.contains('\x1b') && text.contains("t\\u{1b}[2J\\nx"),
        "{text}"
    );
    let runs = stdout(&agentobs(&["--db", &db_arg(&db), "runs"]));
    assert!(!runs.contains('\x1b'));
}

#[test]
fn cost_prints_six_decimals_and_unknown_models_exit_1_with_suggestions() {
    let out = agentobs(&[
        "cost",
        "gpt-4o-mini",
        "1000000",
        "1000000",
        "--cached-input",
        "500000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 500k uncached × 0.15 + 500k cached × 0.075 + 1M output × 0.6 per 1M
    assert_eq!(stdout(&out).lines().next(), Some("0.712500"));
    let out = agentobs(&["cost", "gpt-4o-mnii", "1", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean gpt-4o-mini"),
        "{}",
        stderr(&out)
    );
    let out = agentobs(&["--version"]);
    assert!(stdout(&out).contains(agentobs::BUILTIN_AS_OF));
}

#[test]
fn exit_codes() {
    assert_eq!(agentobs(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        agentobs(&["cost", "gpt-4o", "lots", "1"]).status.code(),
        Some(2)
    );
    let (_d, db) = temp_db();
    let out = agentobs(&["--db", &db_arg(&db), "export", "missing-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing-run"));
    let out = agentobs(&["--db", &db_arg(&db), "alert", "set", "bogus", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cost_usd"), "lists the known metrics");
}

#[test]
fn import_reports_bad_lines_and_exits_1() {
    let (dir, db) = temp_db();
    let file = dir.path().join("in.jsonl");
    let good =
        json!({"type": "run", "run_id": "r", "metadata": {}, "status": "running", "started_at": 1});
    std::fs::write(&file, format!("{good}\nnot json\n")).unwrap();
    let out = agentobs(&["--db", &db_arg(&db), "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2: line 2: invalid JSON") || stderr(&out).contains("line 2"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("1 runs"));
    let out = agentobs(&["--db", &db_arg(&db), "export", "r"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 1);
}

/// The HTML report opens in a real headless browser (Debian's `chromium`): the rendered DOM
/// holds the five charts. Skips, with a message, where no browser is installed.
#[test]
fn html_report_renders_in_a_headless_browser() {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("skipping: no chromium installed (apt-get install chromium)");
        return;
    };
    let (dir, db) = temp_db();
    assert!(agentobs(&["--db", &db_arg(&db), "demo", "--runs", "50"])
        .status
        .success());
    let html = dir.path().join("report.html");
    let out = agentobs(&[
        "--db",
        &db_arg(&db),
        "report",
        "--format",
        "html",
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let profile = dir.path().join("profile");
    // `timeout` (coreutils) bounds a browser that hangs instead of answering.
    let rendered = std::process::Command::new("timeout")
        .args([
            "120",
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", html.display()),
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert_eq!(
        dom.matches("<svg").count(),
        5,
        "the browser rendered five charts"
    );
    assert!(dom.contains("agentobs report"));
}

/// `agentobs export --all | head -1`: the reader closing the pipe early is not a failure.
#[test]
fn a_closed_pipe_is_success() {
    use std::io::{BufRead, BufReader};
    let (_d, db) = temp_db();
    assert!(agentobs(&["--db", &db_arg(&db), "demo", "--runs", "300"])
        .status
        .success());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentobs"))
        .args(["--db", &db_arg(&db), "export", "--all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with(r#"{"type":"run""#));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
