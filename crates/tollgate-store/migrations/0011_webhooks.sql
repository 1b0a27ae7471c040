-- Token event notifications (issue 15, item 4): webhook endpoints per application and their
-- queued deliveries. The audit log is the event source: the store's one audit function
-- (src/audit.rs) inserts one delivery per subscribed, enabled endpoint in the transaction
-- of the change itself (src/webhooks.rs says how).
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- The event types subscribed to, each between commas (",token.created,token.rolled,"),
    -- so that "subscribed to E" is one LIKE '%,E,%'.
    events TEXT NOT NULL,
    -- 1: deliveries are queued for new events; 0: none are.
    enabled BIGINT NOT NULL,
    -- The signing secret, encrypted with the server's secret key (never in clear).
    secret_sealed TEXT NOT NULL,
    creation_date BIGINT NOT NULL,
    last_updated BIGINT NOT NULL
);
CREATE INDEX webhooks_application ON webhooks(application_id);

-- One event to send to one endpoint. The event id is the audit entry's id, so a delivery is
-- named by (webhook_id, event_id) and a receiver sees the same id on every attempt.
CREATE TABLE webhook_deliveries (
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The event's JSON, exactly the body sent (no secret: built from the audit entry).
    payload TEXT NOT NULL,
    -- pending, delivered or failed.
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    creation_date BIGINT NOT NULL,
    first_attempt_at BIGINT,
    last_attempt_at BIGINT,
    -- When the next attempt is due (NULL once delivered or failed).
    next_attempt_at BIGINT,
    -- A worker's claim: until when, and which claim (its outcome is written only under it).
    claimed_until BIGINT,
    claim TEXT,
    last_status_code BIGINT,
    last_error TEXT,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at);
CREATE INDEX webhook_deliveries_list ON webhook_deliveries(webhook_id, creation_date);
