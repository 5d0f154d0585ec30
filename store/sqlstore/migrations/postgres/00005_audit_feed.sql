-- +goose Up
-- The lifecycle feed's position: the id of the transaction that wrote the
-- row, shifted left 20 bits, plus the row's ordinal in that transaction
-- (see feedShift in dialect.go). Rows written before this migration are
-- numbered from 1 in the order of their time, below every position a
-- later transaction can take.
ALTER TABLE workflow_events ADD COLUMN feed_position BIGINT;

WITH numbered AS (
    SELECT instance_id, seq, row_number() OVER (ORDER BY at, instance_id, seq) AS position
    FROM workflow_events
)
UPDATE workflow_events e SET feed_position = n.position
FROM numbered n WHERE e.instance_id = n.instance_id AND e.seq = n.seq;

-- +goose StatementBegin
DO $$
BEGIN
    IF (SELECT count(*) FROM workflow_events) >= (pg_current_xact_id()::text::BIGINT << 20) THEN
        RAISE EXCEPTION 'workflow_events holds too many rows to number below the feed positions to come';
    END IF;
END
$$;
-- +goose StatementEnd

-- Nodes of the previous release, still running during a rolling upgrade,
-- insert audit rows without a position: the default numbers their rows
-- the same way, with a sequence in place of the ordinal weft keeps.
CREATE SEQUENCE workflow_events_feed_ordinal;
ALTER TABLE workflow_events ALTER COLUMN feed_position SET DEFAULT
    (pg_current_xact_id()::text::BIGINT << 20) + (nextval('workflow_events_feed_ordinal') & 1048575);
ALTER TABLE workflow_events ALTER COLUMN feed_position SET NOT NULL;
CREATE UNIQUE INDEX workflow_events_feed ON workflow_events (feed_position);

-- +goose Down
DROP INDEX workflow_events_feed;
ALTER TABLE workflow_events DROP COLUMN feed_position;
DROP SEQUENCE workflow_events_feed_ordinal;
