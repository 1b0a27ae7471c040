-- Organization invitations, pending until the invitee accepts (or rejects) them, and the
-- console's one-time records: token form keys already used, and new secrets waiting to be
-- shown once. Same portable types as 0001.

CREATE TABLE org_invites (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    -- Normalized (trimmed, lower-case), as users.email.
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    -- JSON array of {resourceId, role}; JSON (or NULL) dashboard roles, kept as given.
    application_roles TEXT NOT NULL DEFAULT '[]',
    dashboard_roles TEXT,
    invited_by TEXT REFERENCES users(id) ON DELETE SET NULL,
    invite_date BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX org_invites_email ON org_invites(org_id, email);
CREATE INDEX org_invites_by_email ON org_invites(email);

-- A token form's one-time key, recorded in the transaction that creates the token, so the
-- same form can never create a second one.
CREATE TABLE console_form_keys (
    form_key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    token_id TEXT NOT NULL,
    token_name TEXT NOT NULL,
    used_at BIGINT NOT NULL
);

-- A token secret waiting to be shown once after the redirect that follows its creation. Only
-- `sealed` = secret XOR a one-time pad is stored; the pad is in the creating browser's
-- cookie. Reading it deletes it.
CREATE TABLE console_reveals (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    token_id TEXT NOT NULL,
    token_name TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
