//! Opening a database file: checking it is ours, setting pragmas, applying migrations.
//!
//! The order matters. The first query reads the header (application id, schema version) *before*
//! anything is written, so a file that is not a database, belongs to another program, or was
//! written by a newer agentobs is refused byte-for-byte untouched (even switching the journal to
//! WAL would rewrite its header). Migrations then run under `BEGIN IMMEDIATE`, re-reading the
//! version inside the transaction: two processes opening a fresh file at once serialize on the
//! write lock and the second finds nothing left to do. (`rusqlite_migration` reads the version
//! outside its transaction and pins an older rusqlite, hence these forty lines.)

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

/// `PRAGMA application_id` of an agentobs file: "AGOB".
pub const APPLICATION_ID: i32 = 0x4147_4F42;

/// The embedded migrations, applied in order; `PRAGMA user_version` is how many have run.
/// Released files are never edited: a change to the schema is a new file.
pub const MIGRATIONS: &[(&str, &str)] =
    &[("0001_init", include_str!("../../migrations/0001_init.sql"))];

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn latest_version() -> i64 {
    SCHEMA_VERSION
}

/// How durably a commit is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the process; a power loss
    /// or OS crash may lose the last commits (never corrupt the file). The fast default.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before the call returns, so it survives a power
    /// loss too, at the cost of an fsync per write transaction.
    Full,
}

/// Connection settings shared by the writer and the readers.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    /// Page cache per connection, KiB. 48 MiB holds the hot index pages of a 100,000-run file
    /// (64 MiB was no faster in one run each of the ingest, dashboard and import benches) and
    /// kept a 1.2-million-line import at 75 MiB resident.
    pub cache_size_kib: i64,
    /// Open read-only even when the file is writable.
    pub read_only: bool,
    /// Cap on the file's size, in bytes (`PRAGMA max_page_count`): writes past it fail with
    /// `DiskFull`, as on a full disk.
    pub max_size_bytes: Option<u64>,
}

#[cfg(test)]
impl ConnConfig {
    pub(crate) fn test() -> ConnConfig {
        ConnConfig {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            cache_size_kib: 2048,
            read_only: false,
            max_size_bytes: None,
        }
    }
}

fn not_a_db(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::NotADatabase {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Opens `path` (creating it when missing), checks it, sets pragmas and migrates it.
/// Returns the connection and whether it is read-only.
pub(crate) fn open_file(path: &Path, config: &ConnConfig) -> Result<(Connection, bool)> {
    if path.is_dir() {
        return Err(not_a_db(path, "is a directory"));
    }
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if config.read_only && !path.exists() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no such database to open read-only", path.display()),
        )));
    }
    let first = Connection::open_with_flags(path, if config.read_only { ro } else { rw });
    let (conn, read_only) = match first {
        // SQLite opens a file it may not write read-only without saying so: ask.
        Ok(c) => {
            let ro = config.read_only || c.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
            (c, ro)
        }
        Err(e) if path.exists() => match Connection::open_with_flags(path, ro) {
            Ok(c) => (c, true),
            Err(_) => return Err(not_a_db(path, e)),
        },
        Err(e) => return Err(Error::from(e)),
    };
    let mut conn = conn;
    conn.busy_timeout(config.busy_timeout)?;
    let objects = check_header(&conn, path)?;
    // Switching an existing file to WAL rewrites its header: check the file is sound first, so a
    // damaged file is reported, not modified. (Once a file is in WAL mode, opening writes nothing.)
    if !read_only && objects > 0 {
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            quick_check(&conn, path)?;
        }
    }
    set_pragmas(&conn, config, read_only)?;
    if read_only {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != latest_version() {
            return Err(Error::ReadOnly(format!(
                "{} is at schema version {version} and needs migrating to {}, but it is read-only",
                path.display(),
                latest_version()
            )));
        }
    } else {
        migrate(&mut conn, path)?;
    }
    Ok((conn, read_only))
}

/// Opens a further connection to an already opened and migrated file (for readers).
pub(crate) fn open_reader(path: &Path, config: &ConnConfig, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(config.busy_timeout)?;
    set_pragmas(&conn, config, true)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// An in-memory database, migrated.
pub(crate) fn open_memory(config: &ConnConfig) -> Result<Connection> {
    let mut conn = Connection::open_in_memory()?;
    set_pragmas(&conn, config, false)?;
    migrate(&mut conn, Path::new(":memory:"))?;
    Ok(conn)
}

/// The first query: fails at once on a file that is not a database, and refuses files of other
/// programs or of newer agentobs versions before anything is written.
/// `PRAGMA quick_check`: an O(size) read of every page, run before the rare writes that change
/// a file's format (the switch to WAL, a migration).
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|e| match Error::from(e) {
            Error::NotADatabase { reason, .. } => not_a_db(path, reason),
            other => other,
        })?;
    if verdict != "ok" {
        return Err(not_a_db(path, format!("damaged: {verdict}")));
    }
    Ok(())
}

fn check_header(conn: &Connection, path: &Path) -> Result<i64> {
    let header = conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id),
                (SELECT user_version FROM pragma_user_version),
                (SELECT count(*) FROM sqlite_schema)",
        [],
        |r| {
            Ok((
                r.get::<_, i32>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    );
    let (app_id, version, objects) = match header {
        Ok(h) => h,
        Err(e) => {
            return Err(match Error::from(e) {
                Error::NotADatabase { reason, .. } => not_a_db(path, reason),
                other => other,
            })
        }
    };
    let ours = app_id == APPLICATION_ID;
    let fresh = app_id == 0 && version == 0 && objects == 0;
    if !ours && !fresh {
        return Err(Error::NotOurs {
            path: path.to_path_buf(),
            application_id: app_id,
        });
    }
    if version > latest_version() {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: latest_version(),
        });
    }
    Ok(objects)
}

fn set_pragmas(conn: &Connection, config: &ConnConfig, reader: bool) -> Result<()> {
    if !reader {
        // Returns the mode; an in-memory database answers "memory", which is fine.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    }
    let sync = match config.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "cache_size", -config.cache_size_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    // A large transaction (an import batch) grows the WAL past the checkpoint size; without a
    // limit the file would keep that size on disk for as long as the database stays open.
    conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
    if let Some(bytes) = config.max_size_bytes {
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (bytes / page_size.max(1) as u64).max(1);
        let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
            r.get(0)
        })?;
    }
    Ok(())
}

/// Applies the pending migrations and the version bump in one `BEGIN IMMEDIATE` transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > latest_version() {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: latest_version(),
        });
    }
    if version == latest_version() {
        return Ok(());
    }
    if version > 0 {
        quick_check(&tx, path)?;
    }
    for (name, sql) in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)
            .map_err(|source| Error::Migration { name, source })?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", latest_version())?;
    tx.commit()?;
    Ok(())
}
