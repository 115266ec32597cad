//! The crate's one error type.
//!
//! Every variant is documented by *when* it happens and carries what a caller needs to act on it:
//! the field and the offending value, the model name, the run id, the JSONL line. SQLite's own
//! failures are sorted into the variants a caller would treat differently (busy: retry; disk full
//! or read-only: fix the storage; not a database: wrong path) rather than passed through raw.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in agentobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record, option or argument holds a value the ledger cannot accept: an empty id, a NaN,
    /// infinite or negative number, token counts that do not add up, metadata that is not a JSON
    /// object. Nothing was written.
    #[error("invalid {field}: {value} ({reason})")]
    InvalidValue {
        /// The field, as named in the record or the API (`latency_ms`, `metadata`, ...).
        field: &'static str,
        /// The offending value, rendered for a message (long strings are shortened).
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An LLM call names a model the pricing table does not know, and either the cost was asked
    /// for directly ([`crate::Pricing::compute_cost`]) or the pipeline rejects unknown models.
    #[error("unknown model {model:?}{}", suggestion_text(.suggestions))]
    UnknownModel {
        /// The model name as given.
        model: String,
        /// The nearest names the table does know, best first (possibly empty).
        suggestions: Vec<String>,
    },

    /// A pricing table could not be loaded: a missing or invalid price, an unknown key, tiers or
    /// price history out of order. `model` and `key` say where.
    #[error("pricing table: model {model:?}, key {key:?}: {reason}")]
    Pricing {
        /// The model entry that is wrong (empty when the table as a whole is).
        model: String,
        /// The key inside that entry (empty when the entry as a whole is).
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// `start_run` was called for a run that already exists (started explicitly or implicitly by
    /// an earlier record). Nothing was written.
    #[error("run {run_id:?} already exists")]
    RunExists {
        /// The run id.
        run_id: String,
    },

    /// The run id is not in the database (for `end_run`, `export_jsonl`, ...).
    #[error("run {run_id:?} does not exist")]
    UnknownRun {
        /// The run id.
        run_id: String,
    },

    /// A record or an `end_run` targets a run that has already ended. Nothing was written.
    #[error("run {run_id:?} has already ended with status {status:?}")]
    RunEnded {
        /// The run id.
        run_id: String,
        /// The status the run ended with.
        status: String,
    },

    /// A call id that is already stored was recorded again with different content. (The same
    /// content again is accepted as a safe retry.) Nothing was written.
    #[error("{kind} {call_id:?} is already recorded with different content (differs in {field})")]
    ConflictingDuplicate {
        /// `llm_call` or `tool_call`.
        kind: &'static str,
        /// The call id.
        call_id: String,
        /// The first field found to differ.
        field: &'static str,
    },

    /// An alert rule names a metric agentobs does not evaluate.
    #[error("unknown alert metric {metric:?}; known metrics: {}", known.join(", "))]
    UnknownMetric {
        /// The metric as given.
        metric: String,
        /// The metrics agentobs knows.
        known: Vec<&'static str>,
    },

    /// The database stayed locked by another connection for longer than the busy timeout.
    /// Nothing was written; the call is safe to retry.
    #[error("database is busy (locked by another writer for longer than the busy timeout)")]
    Busy,

    /// The file is read-only (permissions or a read-only mount), so writes are refused.
    #[error("database is read-only: {0}")]
    ReadOnly(String),

    /// The disk (or the file's size limit) is full. The transaction was rolled back; the file is
    /// consistent and usable once space returns.
    #[error("database or disk is full; nothing of this call was written")]
    DiskFull,

    /// The file exists but is not an SQLite database, or is damaged beyond reading (truncated,
    /// a corrupt page). It was not modified.
    #[error("{path}: not a usable agentobs database: {reason}")]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite or agentobs found wrong.
        reason: String,
    },

    /// The file is an SQLite database that belongs to another program (its
    /// `PRAGMA application_id` or its tables are not ours). It was not modified.
    #[error("{path}: an SQLite database of another program (application_id {application_id}), refusing to touch it")]
    NotOurs {
        /// The file.
        path: PathBuf,
        /// Its application id.
        application_id: i32,
    },

    /// The file was written by a newer version of agentobs (its schema version is above what this
    /// build knows). It was not modified.
    #[error("{path}: schema version {found} is newer than this agentobs supports ({supported}); upgrade agentobs")]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// The file's `PRAGMA user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// A migration failed; the file was left at its previous version.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// The migration file name (`0001_init`).
        name: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// A JSONL line could not be imported.
    #[error("line {line}: {reason}")]
    Jsonl {
        /// 1-based line number in the input.
        line: u64,
        /// What is wrong with the line.
        reason: String,
    },

    /// Reading or writing a file or stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// Any other SQLite error (a bug or an environment problem rather than bad input).
    #[error("SQLite error: {0}")]
    Sqlite(rusqlite::Error),
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Error::Busy,
            Some(C::DiskFull) => Error::DiskFull,
            Some(C::ReadOnly) => Error::ReadOnly(e.to_string()),
            Some(C::NotADatabase | C::DatabaseCorrupt) => Error::NotADatabase {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            _ => Error::Sqlite(e),
        }
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidValue`], shortening the rendered value so that a 10 MB string
    /// does not become a 10 MB message.
    pub(crate) fn invalid(
        field: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        let mut value = value.to_string();
        if value.len() > 200 {
            let mut cut = 200;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        Error::InvalidValue {
            field,
            value,
            reason: reason.into(),
        }
    }

    /// Whether the storage itself failed (I/O, busy, disk full, read-only), as opposed to the
    /// input: an import stops at such an error instead of rejecting one line and going on.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Io(_) | Error::Busy | Error::DiskFull | Error::ReadOnly(_)
        )
    }

    /// Whether retrying the same call later may succeed (the database was busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Busy)
    }
}
