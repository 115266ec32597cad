//! Seeded benchmark data, generated once per size and kept under `target/agentobs-bench/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use agentobs::simulate::{simulate, SimulationOptions};
use agentobs::{Pipeline, Pricing};

/// A database file holding `runs` simulated runs (seed 7), generated on first use. Delete
/// `target/agentobs-bench` to regenerate after a schema change.
pub fn prepared_db(runs: usize) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/agentobs-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("runs-{runs}-v{}.db", agentobs::SCHEMA_VERSION));
    if !path.exists() {
        let tmp = dir.join(format!("runs-{runs}.tmp.db"));
        let _ = std::fs::remove_file(&tmp);
        eprintln!("generating {runs} runs into {} (once)…", path.display());
        let started = std::time::Instant::now();
        {
            let p = Pipeline::open(&tmp, Pricing::builtin()).unwrap();
            let mut options = SimulationOptions::new(runs, 7);
            options.runs_per_batch = 200;
            simulate(&p, &options, |_| {}).unwrap();
        }
        // Fold the WAL into the main file so copies are self-contained.
        let conn = rusqlite::Connection::open(&tmp).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .unwrap();
        drop(conn);
        std::fs::rename(&tmp, &path).unwrap();
        eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    }
    path
}

/// A private copy of `src` in a new temp dir (kept alive by the returned guard).
pub fn copy_of(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    std::fs::copy(src, &path).unwrap();
    (dir, path)
}
