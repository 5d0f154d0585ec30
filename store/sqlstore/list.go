package sqlstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/weftworks/weft/store"
)

// Page sizes of InstanceList.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// errBadPageToken answers a page token this store did not make.
var errBadPageToken = store.ErrInvalidPageToken

// InstanceList lists instances by filter, newest first (created_at, then
// id, descending). The page token is an opaque cursor holding the last
// row's created_at and id; the page size defaults to 100 and is capped at
// 1000.
func (s *Store) InstanceList(ctx context.Context, f store.InstanceFilter) (store.InstancePage, error) {
	where, args, err := s.instanceFilter(f)
	if err != nil {
		return store.InstancePage{}, fmt.Errorf("listing instances: %w", err)
	}

	size := f.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}

	size = min(size, MaxPageSize)
	query := `SELECT ` + instanceColumns + ` FROM workflow_instances`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}

	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	rows, err := s.readQuery(ctx, query, append(args, size+1)...)
	if err != nil {
		return store.InstancePage{}, fmt.Errorf("listing instances: %w", err)
	}

	insts, err := collect(rows, scanInstance)
	if err != nil {
		return store.InstancePage{}, fmt.Errorf("listing instances: %w", err)
	}

	page := store.InstancePage{}
	page.Instances, page.NextPageToken = cutPage(insts, size, func(last store.Instance) string {
		return pageToken(ms(last.CreatedAt), last.ID)
	})

	return page, nil
}

// instanceFilter turns a filter into WHERE terms and their arguments.
func (s *Store) instanceFilter(f store.InstanceFilter) ([]string, []any, error) {
	var where []string
	var args []any
	add := func(term string, a ...any) {
		where = append(where, term)
		args = append(args, a...)
	}

	if len(f.Status) > 0 {
		statuses := make([]any, len(f.Status))
		for i, st := range f.Status {
			statuses[i] = string(st)
		}

		add(`status IN (`+placeholders(len(statuses))+`)`, statuses...)
	}

	if f.DefinitionName != "" {
		add(`definition_name = ?`, f.DefinitionName)
	}

	if f.DefinitionVersion != 0 {
		add(`definition_version = ?`, f.DefinitionVersion)
	}

	if f.StartKey != "" {
		add(`start_key = ?`, f.StartKey)
	}

	if !f.CreatedAfter.IsZero() {
		add(`created_at > ?`, ms(f.CreatedAfter))
	}

	if !f.CreatedBefore.IsZero() {
		add(`created_at < ?`, ms(f.CreatedBefore))
	}

	if f.DataPath != "" {
		parts, err := splitPath(f.DataPath)
		if err != nil {
			return nil, nil, err
		}

		if len(f.DataValue) == 0 {
			return nil, nil, errors.New("a data path needs a data value")
		}

		add(s.dialect.JSONEqual("data"), s.dialect.JSONPath(parts), string(f.DataValue))
	}

	if f.PageToken != "" {
		created, id, err := parsePageToken(f.PageToken)
		if err != nil {
			return nil, nil, err
		}

		add(`(created_at < ? OR (created_at = ? AND id < ?))`, created, created, id)
	}

	return where, args, nil
}

// pageToken makes the cursor after the row with this created_at and id.
func pageToken(created int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created, 10) + ":" + id))
}

// parsePageToken reads a cursor made by pageToken.
func parsePageToken(token string) (int64, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", errBadPageToken
	}

	created, id, ok := strings.Cut(string(raw), ":")
	if !ok {
		return 0, "", errBadPageToken
	}

	n, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return 0, "", errBadPageToken
	}

	return n, id, nil
}

// UserTaskList lists the open user tasks by filter, oldest first
// (created_at, then instance id, then pointer id). The partial index
// workflow_steps_user_tasks holds exactly the open tasks, so the query
// reads no other step. The page token is an opaque cursor after the last
// row; the page size defaults to 100 and is capped at 1000.
func (s *Store) UserTaskList(ctx context.Context, f store.UserTaskFilter) (store.UserTaskPage, error) {
	where := []string{`status = 'waiting'`, `assignee <> ''`}
	var args []any
	if f.Assignee != "" {
		where = append(where, `assignee = ?`)
		args = append(args, f.Assignee)
	}
	if f.InstanceID != "" {
		where = append(where, `instance_id = ?`)
		args = append(args, f.InstanceID)
	}
	if f.PageToken != "" {
		created, inst, id, err := parseTaskToken(f.PageToken)
		if err != nil {
			return store.UserTaskPage{}, fmt.Errorf("listing user tasks: %w", err)
		}
		where = append(where, `(created_at > ? OR (created_at = ? AND (instance_id > ? OR `+
			`(instance_id = ? AND id > ?))))`)
		args = append(args, created, created, inst, inst, id)
	}

	size := f.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)

	query := `SELECT ` + stepColumns + ` FROM workflow_steps WHERE ` +
		strings.Join(where, ` AND `) + ` ORDER BY created_at, instance_id, id LIMIT ?`
	rows, err := s.readQuery(ctx, query, append(args, size+1)...)
	if err != nil {
		return store.UserTaskPage{}, fmt.Errorf("listing user tasks: %w", err)
	}

	steps, err := collect(rows, scanStep)
	if err != nil {
		return store.UserTaskPage{}, fmt.Errorf("listing user tasks: %w", err)
	}

	page := store.UserTaskPage{}
	page.Steps, page.NextPageToken = cutPage(steps, size, func(last store.Step) string {
		return pageToken(ms(last.CreatedAt), last.InstanceID+"/"+strconv.FormatInt(last.ID, 10))
	})

	return page, nil
}

// parseTaskToken reads a cursor made by UserTaskList.
func parseTaskToken(token string) (created int64, instanceID string, id int64, err error) {
	created, rest, err := parsePageToken(token)
	if err != nil {
		return 0, "", 0, err
	}

	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return 0, "", 0, errBadPageToken
	}
	id, err = strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return 0, "", 0, errBadPageToken
	}

	return created, rest[:i], id, nil
}

// cutPage keeps the first size rows of a query that asked for size+1,
// and gives the token of the next page, made from the last row kept,
// when there is one.
func cutPage[T any](rows []T, size int, token func(last T) string) ([]T, string) {
	if len(rows) <= size {
		return rows, ""
	}

	return rows[:size], token(rows[size-1])
}
