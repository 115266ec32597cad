-- agentobs schema, version 1.
--
-- Units are in the column names: *_ms milliseconds, *_at and timestamp Unix epoch seconds (REAL),
-- *_tokens token counts, *_usd US dollars (REAL, for reading), *_picousd exact integer
-- pico-dollars (1e-12 USD; what every sum is computed from).
-- Every table is STRICT, so a value of the wrong type is an error, never silently coerced.

-- One row per agent run, with rollups kept current by every write transaction, so totals per run
-- (and across runs) never need a scan over the call tables.
CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY NOT NULL CHECK (run_id <> ''),
    status           TEXT NOT NULL DEFAULT 'running' CHECK (status <> ''),
    metadata         TEXT NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object'),
    started_at       REAL NOT NULL,
    ended_at         REAL,
    duration_ms      REAL,            -- (ended_at - started_at) * 1000, set when the run ends
    llm_calls        INTEGER NOT NULL DEFAULT 0,
    tool_calls       INTEGER NOT NULL DEFAULT 0,
    tool_errors      INTEGER NOT NULL DEFAULT 0,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    cached_calls     INTEGER NOT NULL DEFAULT 0,  -- LLM calls answered from a response cache
    unpriced_calls   INTEGER NOT NULL DEFAULT 0,  -- LLM calls whose cost is unknown (not in cost_usd)
    unpriced_tokens  INTEGER NOT NULL DEFAULT 0,  -- input + output tokens of those calls
    cost_picousd     INTEGER NOT NULL DEFAULT 0,  -- exact sum of the priced calls' costs
    cost_usd         REAL NOT NULL DEFAULT 0      -- cost_picousd / 1e12, for reading
) STRICT;

CREATE INDEX runs_by_started_at ON runs (started_at);
CREATE INDEX runs_by_status ON runs (status, started_at);
-- Exact run-duration percentiles pick rows by rank (see latency_histogram).
CREATE INDEX runs_by_duration ON runs (duration_ms) WHERE duration_ms IS NOT NULL;

-- One row per LLM call. cost_source says where cost_usd came from: 'given' by the caller,
-- 'computed' from the pricing table, or 'unpriced' (model unknown: cost_usd and cost_picousd NULL).
CREATE TABLE llm_calls (
    call_id              TEXT PRIMARY KEY NOT NULL CHECK (call_id <> ''),
    run_id               TEXT NOT NULL REFERENCES runs (run_id),
    step                 INTEGER NOT NULL,
    model                TEXT NOT NULL CHECK (model <> ''),
    input_tokens         INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens        INTEGER NOT NULL CHECK (output_tokens >= 0),
    cached_input_tokens  INTEGER CHECK (cached_input_tokens >= 0),  -- part of input_tokens
    cache_write_tokens   INTEGER CHECK (cache_write_tokens >= 0),   -- part of input_tokens
    reasoning_tokens     INTEGER CHECK (reasoning_tokens >= 0),     -- part of output_tokens
    latency_ms           REAL NOT NULL CHECK (latency_ms >= 0),
    cost_usd             REAL,
    cost_picousd         INTEGER,
    cost_source          TEXT NOT NULL CHECK (cost_source IN ('given', 'computed', 'unpriced')),
    timestamp            REAL NOT NULL,
    cached               INTEGER NOT NULL CHECK (cached IN (0, 1)),
    error                TEXT,
    metadata             TEXT CHECK (metadata IS NULL OR json_type(metadata) = 'object'),
    CHECK ((cost_source = 'unpriced') = (cost_picousd IS NULL))
) STRICT;

-- Export and per-run reads walk a run's calls in step order. The trailing columns make the index
-- cover a filtered dashboard's reads, so it never visits the (wide) table rows.
CREATE INDEX llm_calls_by_run ON llm_calls
    (run_id, step, timestamp, model, latency_ms, input_tokens, output_tokens, cost_picousd, cached);
-- Exact percentiles read the values of one latency bucket per model (see latency_histogram). The
-- cross-model percentile merges the models' ranges, so no global latency index costs every insert
-- a second random page write.
CREATE INDEX llm_calls_by_model_latency ON llm_calls (model, latency_ms);
-- Re-pricing unpriced calls finds them without a scan.
CREATE INDEX llm_calls_unpriced ON llm_calls (model) WHERE cost_source = 'unpriced';

CREATE TABLE tool_calls (
    call_id     TEXT PRIMARY KEY NOT NULL CHECK (call_id <> ''),
    run_id      TEXT NOT NULL REFERENCES runs (run_id),
    step        INTEGER NOT NULL,
    tool_name   TEXT NOT NULL CHECK (tool_name <> ''),
    latency_ms  REAL NOT NULL CHECK (latency_ms >= 0),
    success     INTEGER NOT NULL CHECK (success IN (0, 1)),
    error       TEXT,
    timestamp   REAL NOT NULL,
    metadata    TEXT CHECK (metadata IS NULL OR json_type(metadata) = 'object')
) STRICT;

CREATE INDEX tool_calls_by_run ON tool_calls (run_id, step, timestamp, tool_name, latency_ms, success);
CREATE INDEX tool_calls_by_tool_latency ON tool_calls (tool_name, latency_ms);

-- Internal to the dashboard, maintained in every write transaction: per series ('llm' by model,
-- 'tool' by tool name, 'run' for ended runs' durations) and per latency bucket (the top bits of
-- the latency's IEEE-754 pattern, so bucket order is latency order), how many rows fall in the
-- bucket and their sums. Counts locate the bucket that holds rank k; an index range pick inside
-- that bucket gives the exact value. Sums give per-model and per-tool totals without a scan.
CREATE TABLE latency_histogram (
    series            TEXT NOT NULL CHECK (series IN ('llm', 'tool', 'run')),
    key               TEXT NOT NULL,
    bucket            INTEGER NOT NULL,
    calls             INTEGER NOT NULL,
    errors            INTEGER NOT NULL DEFAULT 0,
    cached_calls      INTEGER NOT NULL DEFAULT 0,
    unpriced_calls    INTEGER NOT NULL DEFAULT 0,
    input_tokens      INTEGER NOT NULL DEFAULT 0,
    output_tokens     INTEGER NOT NULL DEFAULT 0,
    -- The priced cost split in two so that SQLite's 64-bit additions never overflow below 9e12 USD:
    -- cost = cost_microusd * 1e6 + cost_rem_picousd (pico-dollars).
    cost_microusd     INTEGER NOT NULL DEFAULT 0,
    cost_rem_picousd  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (series, key, bucket)
) STRICT, WITHOUT ROWID;

-- Per UTC day of run start and per final status: the sums of the *ended* runs' rollups, added when a
-- run ends (and kept current by imports and re-pricing), so whole-file totals never scan the runs;
-- the few running runs are summed live. Cost and tokens are split in two (value = hi * 1e6 + lo,
-- resp. * 1e9) so that no 64-bit addition can overflow.
CREATE TABLE daily_totals (
    day              TEXT NOT NULL,      -- 'YYYY-MM-DD', UTC, of the runs' started_at
    status           TEXT NOT NULL,
    runs             INTEGER NOT NULL DEFAULT 0,
    llm_calls        INTEGER NOT NULL DEFAULT 0,
    tool_calls       INTEGER NOT NULL DEFAULT 0,
    tool_errors      INTEGER NOT NULL DEFAULT 0,
    cached_calls     INTEGER NOT NULL DEFAULT 0,
    unpriced_calls   INTEGER NOT NULL DEFAULT 0,
    input_tokens_hi  INTEGER NOT NULL DEFAULT 0,
    input_tokens_lo  INTEGER NOT NULL DEFAULT 0,
    output_tokens_hi INTEGER NOT NULL DEFAULT 0,
    output_tokens_lo INTEGER NOT NULL DEFAULT 0,
    unpriced_tokens_hi INTEGER NOT NULL DEFAULT 0,
    unpriced_tokens_lo INTEGER NOT NULL DEFAULT 0,
    cost_microusd    INTEGER NOT NULL DEFAULT 0,
    cost_rem_picousd INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, status)
) STRICT, WITHOUT ROWID;

-- Alert rules persist in the file, so every process sharing it applies the same rules.
CREATE TABLE alert_rules (
    metric      TEXT PRIMARY KEY NOT NULL,
    threshold   REAL NOT NULL CHECK (threshold >= 0),
    min_calls   INTEGER NOT NULL DEFAULT 0 CHECK (min_calls >= 0),
    created_at  REAL NOT NULL
) STRICT;

-- Fired alerts: at most one per (run, metric).
CREATE TABLE alerts (
    alert_id   INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    metric     TEXT NOT NULL,
    value      REAL NOT NULL,
    threshold  REAL NOT NULL,
    call_id    TEXT NOT NULL,
    fired_at   REAL NOT NULL,
    UNIQUE (run_id, metric)
) STRICT;

CREATE INDEX alerts_by_fired_at ON alerts (fired_at);
