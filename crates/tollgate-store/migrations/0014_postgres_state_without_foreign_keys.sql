-- PostgreSQL only (on SQLite this migration is recorded and does nothing). A foreign key's
-- check is a trigger that runs, for every inserted row, a query that finds the parent and
-- locks it (`SELECT 1 FROM devices WHERE id = $1 FOR KEY SHARE`): for 100 reports of three
-- values, 400 such queries, each with its own executor start, all for the one device that
-- the transaction has already locked. Measured with `ingest_load` (16 connections × 100
-- reports of 3 values): a fifth of all the machine's samples in those checks, 27,700 and
-- 32,900 reports/s with them, 40,200 and 41,700 without (BENCHMARKS.md, *State without
-- foreign keys on PostgreSQL*).
--
-- What the keys guaranteed still holds, by other means:
-- * no report or point of a missing device: the only writer of these tables (`write_reports`)
--   runs after the same transaction locked the device FOR KEY SHARE (`device_for_write`, or
--   the group commit's batch read), so the device exists and cannot be deleted until commit;
-- * deleting a device deletes its reports and points, whichever statement deleted it (the
--   device itself, or its application's cascade): the trigger below, which runs the same
--   per-device deletes the keys' ON DELETE CASCADE ran. A delete that waited for a writer's
--   lock runs it after that writer committed, and sees its rows (READ COMMITTED: each
--   statement of the function takes a new snapshot);
-- * `tollgate db check` looks for rows of a missing device in both tables.
ALTER TABLE device_points DROP CONSTRAINT device_points_device_id_fkey;
ALTER TABLE device_reports DROP CONSTRAINT device_reports_device_id_fkey;

CREATE FUNCTION tollgate_device_state_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM device_points WHERE device_id = OLD.id;
    DELETE FROM device_reports WHERE device_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER device_state_deleted AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION tollgate_device_state_deleted();
