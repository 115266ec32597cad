//! JSONL import throughput and peak memory. A file of about 1.2 million lines (an export of
//! 50,000 simulated runs) is imported once into a fresh file, timed, with the process's peak
//! resident memory measured around it; SQLite alone copying the same rows into the same tables
//! gives the floor for comparison; criterion then tracks a 100,000-line import.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use agentobs::{ImportOptions, Pipeline, Pricing};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn jsonl_file(runs: usize) -> PathBuf {
    let db = common::prepared_db(runs);
    let path = db.with_extension("jsonl");
    if !path.exists() {
        let p = Pipeline::open(&db, Pricing::builtin()).unwrap();
        let mut out = BufWriter::new(File::create(&path).unwrap());
        p.export_all_jsonl_to(None, None, &mut out).unwrap();
        out.flush().unwrap();
    }
    path
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn import(path: &Path, input: impl BufRead) -> agentobs::ImportReport {
    let p = Pipeline::open(path, Pricing::builtin()).unwrap();
    let report = p
        .import_jsonl(
            input,
            &ImportOptions::default(),
            |line, e| panic!("line {line}: {e}"),
            |_| {},
        )
        .unwrap();
    assert_eq!(report.rejected, 0);
    report
}

fn benches(c: &mut Criterion) {
    let runs = std::env::var("AGENTOBS_BENCH_IMPORT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let file = jsonl_file(runs);
    let bytes = std::fs::metadata(&file).unwrap().len();

    // One full import, timed, with peak memory: reset the high-water mark first (Linux).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let report = import(
        &dir.path().join("import.db"),
        BufReader::with_capacity(1 << 20, File::open(&file).unwrap()),
    );
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "import of {} lines ({:.0} MB): {:.1} s, {:.0} lines/s; peak RSS {:.1} MiB (before: {:.1} MiB)",
        report.lines,
        bytes as f64 / 1e6,
        secs,
        report.lines as f64 / secs,
        peak_rss_kib() as f64 / 1024.0,
        before as f64 / 1024.0
    );

    // The floor: SQLite alone copying the same rows into the same tables of a new file (same
    // pragmas), in one transaction, with nothing parsed or bound; then the same without the
    // call tables' secondary indexes, built after the copy.
    for (label, defer_indexes) in [("indexes kept", false), ("indexes built after", true)] {
        let (rows, secs) = bare_copy(
            &dir.path().join("import.db"),
            &dir.path().join(label),
            defer_indexes,
        );
        eprintln!(
            "bare SQLite copy of the same {rows} rows, one transaction, {label}: {secs:.1} s, {:.0} rows/s",
            rows as f64 / secs
        );
    }

    let head: Vec<u8> = {
        let mut out = Vec::new();
        for line in BufReader::new(File::open(&file).unwrap())
            .split(b'\n')
            .take(100_000)
        {
            out.extend_from_slice(&line.unwrap());
            out.push(b'\n');
        }
        out
    };
    let mut g = c.benchmark_group("import");
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.bench_function("100k lines", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let r = import(&dir.path().join("i.db"), Cursor::new(&head));
                assert_eq!(r.lines, 100_000);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Copies the rows of `src` into a new agentobs file at `dst` with plain SQL; returns the rows
/// copied and the seconds taken.
fn bare_copy(src: &Path, dst: &Path, defer_indexes: bool) -> (i64, f64) {
    drop(Pipeline::open(dst, Pricing::builtin()).unwrap());
    let conn = rusqlite::Connection::open(dst).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -49152; PRAGMA wal_autocheckpoint = 10000;",
    )
    .unwrap();
    conn.execute("ATTACH ?1 AS src", [src.to_str().unwrap()])
        .unwrap();
    let indexes: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL
             AND tbl_name IN ('llm_calls', 'tool_calls')",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM src.runs) + (SELECT count(*) FROM src.llm_calls)
                    + (SELECT count(*) FROM src.tool_calls)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let started = Instant::now();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    if defer_indexes {
        for (name, _) in &indexes {
            conn.execute_batch(&format!("DROP INDEX \"{name}\""))
                .unwrap();
        }
    }
    conn.execute_batch(
        "INSERT INTO runs SELECT * FROM src.runs ORDER BY rowid;
         INSERT INTO llm_calls SELECT * FROM src.llm_calls ORDER BY rowid;
         INSERT INTO tool_calls SELECT * FROM src.tool_calls ORDER BY rowid;",
    )
    .unwrap();
    if defer_indexes {
        for (_, sql) in &indexes {
            conn.execute_batch(sql).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    (rows, started.elapsed().as_secs_f64())
}

criterion_group!(import_benches, benches);
criterion_main!(import_benches);
