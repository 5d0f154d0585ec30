-- +goose Up
-- Finds the finished instances a purge deletes, oldest first.
CREATE INDEX workflow_instances_ended ON workflow_instances (ended_at) WHERE ended_at IS NOT NULL;

-- +goose Down
DROP INDEX workflow_instances_ended;
