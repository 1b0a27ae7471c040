-- Devices, their state and commands, and stored workflow definitions. Same portable types as
-- 0001 (TEXT ids, BIGINT ms, DOUBLE PRECISION, JSON in TEXT). Everything hangs off an
-- application with ON DELETE CASCADE, so deleting an application removes all of it.

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    device_class TEXT NOT NULL,
    -- JSON array of {key, value}, in the order given; device_tags is its searchable copy.
    tags TEXT NOT NULL DEFAULT '[]',
    -- JSON array of attribute definitions (name, dataType, ...), as in the reference.
    attributes TEXT NOT NULL DEFAULT '[]',
    -- Other reference fields kept and returned (gatewayId, parentId, systemInterval, ...).
    extra TEXT NOT NULL DEFAULT '{}',
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
CREATE INDEX devices_application ON devices(application_id, name);

-- One row per tag, so "devices tagged floor=3" is an indexed lookup.
CREATE TABLE device_tags (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL,
    ord BIGINT NOT NULL,
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (device_id, ord)
);
CREATE INDEX device_tags_lookup ON device_tags(application_id, tag_key, tag_value);

-- One row per state report time: what device.getState pages over (its attribute values are
-- in device_points at the same time). A report at an existing time merges into it.
CREATE TABLE device_reports (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    time BIGINT NOT NULL,
    meta TEXT,                  -- the report's `meta`, as JSON, if it had one
    PRIMARY KEY (device_id, time)
);

-- One narrow row per attribute value: the time-series store. The primary key is the index
-- every query uses (one device, one attribute, a time range). Numbers and booleans (1/0) are
-- in `num`, strings, GPS and blobs in `txt`; the attribute's declared dataType says which
-- (points of an attribute whose type changes are deleted, as in the reference).
CREATE TABLE device_points (
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    attribute TEXT NOT NULL,
    time BIGINT NOT NULL,
    num DOUBLE PRECISION,
    txt TEXT,
    PRIMARY KEY (device_id, attribute, time)
);

CREATE TABLE device_commands (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    time BIGINT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT                -- JSON, if the command had a payload
);
CREATE INDEX device_commands_device_time ON device_commands(device_id, time);

-- Stored workflow definitions (running them is not implemented yet).
CREATE TABLE flows (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    flow_class TEXT NOT NULL,
    -- Everything else of the definition (description, enabled, triggers, nodes, globals, ...)
    -- as one JSON object.
    definition TEXT NOT NULL,
    created_by_type TEXT NOT NULL,
    created_by_id TEXT NOT NULL,
    last_updated_by_type TEXT NOT NULL,
    last_updated_by_id TEXT NOT NULL,
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
CREATE INDEX flows_application ON flows(application_id, flow_class, name);
