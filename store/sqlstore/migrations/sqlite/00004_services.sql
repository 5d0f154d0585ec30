-- +goose Up
-- The service registry: how weft hands each service its tasks and the
-- limits every node holds it to. addresses is a JSON array of host:port
-- text; dispatch_timeout is milliseconds. tokens and tokens_at are the
-- rate limit's token bucket: its level, and when that level was reckoned.
CREATE TABLE services (
    name             TEXT    NOT NULL PRIMARY KEY,
    mode             TEXT    NOT NULL,
    addresses        TEXT    NOT NULL,
    tls_enabled      INTEGER NOT NULL DEFAULT 0,
    tls_ca_file      TEXT    NOT NULL DEFAULT '',
    tls_cert_file    TEXT    NOT NULL DEFAULT '',
    tls_key_file     TEXT    NOT NULL DEFAULT '',
    tls_server_name  TEXT    NOT NULL DEFAULT '',
    concurrency      INTEGER NOT NULL DEFAULT 0,
    rate             REAL    NOT NULL DEFAULT 0,
    burst            INTEGER NOT NULL DEFAULT 0,
    dispatch_timeout INTEGER NOT NULL DEFAULT 0,
    dispatch_limit   INTEGER NOT NULL DEFAULT 0,
    tokens           REAL    NOT NULL DEFAULT 0,
    tokens_at        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Counts the tasks of a service that are claimed, for its concurrency cap.
CREATE INDEX dispatch_tasks_claimed ON dispatch_tasks (service, claim_expires)
    WHERE claimed_by <> '';

-- +goose Down
DROP INDEX dispatch_tasks_claimed;
DROP TABLE services;
