-- +goose Up
-- The assignee of a user task step; empty for every other step.
ALTER TABLE workflow_steps ADD COLUMN assignee TEXT NOT NULL DEFAULT '';
-- Finds the open user tasks, of one assignee or all, oldest first.
CREATE INDEX workflow_steps_user_tasks ON workflow_steps (assignee, created_at)
    WHERE status = 'waiting' AND assignee <> '';

-- +goose Down
DROP INDEX workflow_steps_user_tasks;
ALTER TABLE workflow_steps DROP COLUMN assignee;
