-- +goose Up
-- Times are unix milliseconds; NULL stands for "none". JSON is kept as TEXT
-- exactly as the engine wrote it.

CREATE TABLE workflow_definitions (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE workflow_instances (
    id                 TEXT    NOT NULL PRIMARY KEY,
    definition_name    TEXT    NOT NULL,
    definition_version INTEGER NOT NULL,
    status             TEXT    NOT NULL,
    reason             TEXT    NOT NULL DEFAULT '',
    input              TEXT,
    data               TEXT,
    output             TEXT,
    error              TEXT,
    start_key          TEXT    NOT NULL DEFAULT '',
    state              TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    ended_at           INTEGER,
    last_seq           INTEGER NOT NULL DEFAULT 0,
    next_pointer       INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT    NOT NULL DEFAULT '',
    lease_epoch        INTEGER NOT NULL DEFAULT 0,
    lease_expires      INTEGER,
    wake               INTEGER NOT NULL DEFAULT 0,
    due_at             INTEGER
);

CREATE INDEX workflow_instances_due ON workflow_instances (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX workflow_instances_definition
    ON workflow_instances (definition_name, definition_version);
CREATE INDEX workflow_instances_created ON workflow_instances (created_at, id);
CREATE INDEX workflow_instances_status ON workflow_instances (status, created_at, id);
CREATE INDEX workflow_instances_start_key ON workflow_instances (start_key) WHERE start_key <> '';

CREATE TABLE workflow_steps (
    instance_id    TEXT    NOT NULL,
    id             INTEGER NOT NULL,
    step_id        TEXT    NOT NULL,
    parent_id      INTEGER NOT NULL DEFAULT 0,
    slot           INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 0,
    service        TEXT    NOT NULL DEFAULT '',
    action         TEXT    NOT NULL DEFAULT '',
    input          TEXT,
    output         TEXT,
    error          TEXT,
    state          TEXT,
    token          TEXT    NOT NULL DEFAULT '',
    work           INTEGER NOT NULL DEFAULT 0,
    report_kind    TEXT,
    report_attempt INTEGER,
    report_output  TEXT,
    report_error   TEXT,
    report_event   INTEGER,
    report_at      INTEGER,
    rev            INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    ended_at       INTEGER,
    PRIMARY KEY (instance_id, id)
);

CREATE INDEX workflow_steps_work ON workflow_steps (instance_id, work) WHERE work = 1;
CREATE INDEX workflow_steps_parent ON workflow_steps (instance_id, parent_id, slot);
CREATE INDEX workflow_steps_waiting ON workflow_steps (instance_id) WHERE status = 'waiting';

CREATE TABLE workflow_events (
    instance_id TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    step_id     TEXT    NOT NULL DEFAULT '',
    pointer_id  INTEGER NOT NULL DEFAULT 0,
    attempt     INTEGER NOT NULL DEFAULT 0,
    data        TEXT,
    at          INTEGER NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

CREATE TABLE published_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    data         TEXT,
    time         INTEGER NOT NULL,
    instance_id  TEXT    NOT NULL DEFAULT '',
    published_at INTEGER NOT NULL,
    matched      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX published_events_name_key ON published_events (name, key, time);
CREATE INDEX published_events_unmatched ON published_events (time, id) WHERE matched = 0;

CREATE TABLE event_deliveries (
    instance_id  TEXT    NOT NULL,
    event_id     INTEGER NOT NULL,
    pointer_id   INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (instance_id, event_id)
);

CREATE TABLE event_subscriptions (
    instance_id TEXT    NOT NULL,
    pointer_id  INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    as_of       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (instance_id, pointer_id)
);

CREATE INDEX event_subscriptions_name_key ON event_subscriptions (name, key, created_at);

CREATE TABLE workflow_timers (
    instance_id  TEXT    NOT NULL,
    pointer_id   INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    fire_at      INTEGER NOT NULL,
    while_paused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, pointer_id, kind)
);

CREATE INDEX workflow_timers_fire ON workflow_timers (instance_id, fire_at);

CREATE TABLE dispatch_tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id     TEXT    NOT NULL,
    pointer_id      INTEGER NOT NULL,
    step_id         TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    service         TEXT    NOT NULL,
    action          TEXT    NOT NULL DEFAULT '',
    input           TEXT,
    idempotency_key TEXT    NOT NULL DEFAULT '',
    token           TEXT    NOT NULL DEFAULT '',
    visible_at      INTEGER NOT NULL,
    claimed_by      TEXT    NOT NULL DEFAULT '',
    claim_expires   INTEGER,
    claims          INTEGER NOT NULL DEFAULT 0,
    start_to_close  INTEGER NOT NULL DEFAULT 0,
    heartbeat       INTEGER NOT NULL DEFAULT 0,
    deadline        INTEGER,
    created_at      INTEGER NOT NULL
);

CREATE INDEX dispatch_tasks_visible ON dispatch_tasks (service, visible_at, id);
CREATE INDEX dispatch_tasks_pointer ON dispatch_tasks (instance_id, pointer_id);

CREATE TABLE start_keys (
    definition_name TEXT NOT NULL,
    start_key       TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    input_hash      TEXT NOT NULL,
    expires_at      INTEGER,
    PRIMARY KEY (definition_name, start_key)
);

-- +goose Down
DROP TABLE start_keys;
DROP TABLE dispatch_tasks;
DROP TABLE workflow_timers;
DROP TABLE event_subscriptions;
DROP TABLE event_deliveries;
DROP TABLE published_events;
DROP TABLE workflow_events;
DROP TABLE workflow_steps;
DROP TABLE workflow_instances;
DROP TABLE workflow_definitions;
