-- SQLite only (PostgreSQL tables have no rowid; there this migration is recorded and does
-- nothing). device_reports and device_points were rowid tables with their primary key as a
-- second B-tree beside them: every stored point was written twice (the row, then its key
-- with the device id again), and every read by key looked up the index, then the row.
-- WITHOUT ROWID keeps each row in its primary key's B-tree only. Measured with
-- `ingest_load` (16 connections × 100 reports of 3 points, a fresh database): the server's
-- CPU per report 40–43 µs before, 30–34 µs after (BENCHMARKS.md, *Points without rowid*).
-- Rows here are small (a device id, an attribute name, a time, a number or a short text),
-- which is where SQLite recommends WITHOUT ROWID. The rows are copied in the migration's
-- transaction; nothing references these two tables, so dropping the old ones checks nothing.
CREATE TABLE device_reports_keyed (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    time BIGINT NOT NULL,
    meta TEXT,
    PRIMARY KEY (device_id, time)
) WITHOUT ROWID;
INSERT INTO device_reports_keyed (device_id, time, meta)
    SELECT device_id, time, meta FROM device_reports;
DROP TABLE device_reports;
ALTER TABLE device_reports_keyed RENAME TO device_reports;

CREATE TABLE device_points_keyed (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    attribute TEXT NOT NULL,
    time BIGINT NOT NULL,
    num DOUBLE PRECISION,
    txt TEXT,
    PRIMARY KEY (device_id, attribute, time)
) WITHOUT ROWID;
INSERT INTO device_points_keyed (device_id, attribute, time, num, txt)
    SELECT device_id, attribute, time, num, txt FROM device_points;
DROP TABLE device_points;
ALTER TABLE device_points_keyed RENAME TO device_points;
