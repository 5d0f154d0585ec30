-- +goose Up
-- The lifecycle feed's position, as a column of its own that is never
-- reused. It was the implicit rowid, which starts again from 1 once a
-- purge empties the table and which VACUUM may renumber. Rows keep the
-- rowid they had, so that a reader resumes where it was; the one writer
-- numbers new rows in commit order.
CREATE TABLE workflow_events_feed (
    feed_position INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    type          TEXT    NOT NULL,
    step_id       TEXT    NOT NULL DEFAULT '',
    pointer_id    INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 0,
    data          TEXT,
    at            INTEGER NOT NULL
);

INSERT INTO workflow_events_feed
    (feed_position, instance_id, seq, type, step_id, pointer_id, attempt, data, at)
SELECT rowid, instance_id, seq, type, step_id, pointer_id, attempt, data, at
FROM workflow_events ORDER BY rowid;

DROP TABLE workflow_events;
ALTER TABLE workflow_events_feed RENAME TO workflow_events;
CREATE UNIQUE INDEX workflow_events_seq ON workflow_events (instance_id, seq);

-- +goose Down
CREATE TABLE workflow_events_seq (
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

INSERT INTO workflow_events_seq (instance_id, seq, type, step_id, pointer_id, attempt, data, at)
SELECT instance_id, seq, type, step_id, pointer_id, attempt, data, at
FROM workflow_events ORDER BY feed_position;

DROP TABLE workflow_events;
ALTER TABLE workflow_events_seq RENAME TO workflow_events;
