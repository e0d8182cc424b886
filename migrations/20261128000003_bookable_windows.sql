-- Projector `bookable_windows`: the slot starts of every enabled meeting type, precomputed
-- for [today − 1 day, today + horizonDays + 1 day] in its availability's zone, so that
-- `GET /v4/user/{id}/bookable-windows` computes nothing (api.md section 5).
--
-- Layout: one row per meeting type, its starts run-length encoded as arithmetic runs
-- (`run_starts[i] + k · run_steps[i] seconds`, k < run_counts[i]). Chosen by measurement:
-- `scripts/layout-bench.sh` (2,000 default users, 62 days, the 2-core development machine,
-- 2026-11-28) printed
--
--   layout                       rows       size     bulk write   5-day read (4 clients)
--   row per slot                 1,408,000  164 MB   6.68 s       0.201 ms  19,912/s
--   row per user-day, array         88,000   22 MB   0.83 s       0.150 ms  26,632/s
--   row per meeting type, runs       2,000  1.9 MB   0.11 s       0.142 ms  28,261/s
--
-- (each read also pays a 0.135 ms user-id lookup the script shares across layouts). Reads
-- differ little; writes and size differ by one to two orders of magnitude, and writes are
-- what a projector, a rebuild and every booking pay. A working day is one run, so a user's
-- 60 days are about 44 runs (~0.7 KB), small enough for the query side to keep every user
-- in memory (projections/src/bookable_windows.rs). The query side only filters by range,
-- `now + minimum notice` and the horizon, as architecture.md says.
CREATE TABLE bookable_windows (
    meeting_type_id        uuid        PRIMARY KEY,
    user_id                uuid        NOT NULL,
    company_id             uuid        NOT NULL,
    is_default             boolean     NOT NULL,
    -- The user's zone: the output zone of a query that names none.
    user_timezone          text        NOT NULL,
    -- The availability's zone the starts were computed in.
    availability_timezone  text        NOT NULL,
    minimum_notice_minutes integer     NOT NULL,
    horizon_days           integer     NOT NULL,
    -- The starts cover [covers_from, covers_until).
    covers_from            timestamptz NOT NULL,
    covers_until           timestamptz NOT NULL,
    -- The next local midnight of the availability's zone: then the horizon moves a day.
    refresh_at             timestamptz NOT NULL,
    run_starts             timestamptz[] NOT NULL,
    run_steps              integer[]   NOT NULL,
    run_counts             integer[]   NOT NULL,
    CHECK (cardinality(run_starts) = cardinality(run_steps) AND cardinality(run_steps) = cardinality(run_counts))
);
CREATE INDEX bookable_windows_user ON bookable_windows (user_id);
CREATE INDEX bookable_windows_refresh ON bookable_windows (refresh_at);

-- Every recomputation deletes and reinserts a user's rows, and the table grows with every
-- user: vacuum and re-analyze it sooner than the defaults (20% / 10% of the table) would, so
-- dead rows and stale statistics do not steer the deletes off the user_id index.
ALTER TABLE bookable_windows SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
