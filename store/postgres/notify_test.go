package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/postgres/pgtest"
)

// drain empties ch of the notices already there.
func drain(ch <-chan store.Notice) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// expect waits for a notice of kind on ch.
func expect(t *testing.T, ch <-chan store.Notice, kind store.Notice) {
	t.Helper()

	timeout := time.After(10 * time.Second)
	for {
		select {
		case n, ok := <-ch:
			if !ok {
				t.Fatalf("notices closed while waiting for %s", kind)
			}

			if n == kind {
				return
			}
		case <-timeout:
			t.Fatalf("no %s notice within 10s", kind)
		}
	}
}

// TestNoticesCrossNodes: a commit on one node that makes an instance
// runnable or a task claimable reaches another node as a notice, also
// after the listener's connection was killed and came back.
func TestNoticesCrossNodes(t *testing.T) {
	url, schema := pgtest.Schema(t)
	a := pgtest.OpenSchema(t, url, schema)
	b := pgtest.OpenSchema(t, url, schema)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	notices := b.Notifications(ctx)
	expect(t, notices, store.NoticeTasks)
	drain(notices)

	now := time.Now()
	create := func(id string) {
		t.Helper()

		_, _, err := a.InstanceCreate(ctx, store.InstanceCreateParams{
			Instance: store.Instance{
				ID: id, DefinitionName: "d", DefinitionVersion: 1, Status: store.InstanceRunning,
			},
			Now: now,
		})
		if err != nil {
			t.Fatalf("creating instance: %v", err)
		}
	}

	create("first")
	expect(t, notices, store.NoticeInstances)

	terminateListener(t, url, postgres.Channel(schema))
	expect(t, notices, store.NoticeInstances)
	drain(notices)

	create("second")
	expect(t, notices, store.NoticeInstances)

	cancel()
	for open := true; open; {
		_, open = <-notices
	}
}

// terminateListener kills the server process of the connection that
// LISTENs on channel, as a database restart or a network cut would.
func terminateListener(t *testing.T, url, channel string) {
	t.Helper()

	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(t.Context())

	listen := "LISTEN " + pgx.Identifier{channel}.Sanitize()
	var killed int
	err = conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE query = $1`, listen).Scan(&killed)
	if err != nil || killed == 0 {
		t.Fatalf("terminating the listener: %d killed, error %v", killed, err)
	}
}

// TestNoticesAfterOutage: a node that reaches the database through a
// proxy keeps getting other nodes' notices after the proxy was cut for
// longer than several of the listener's reconnects.
func TestNoticesAfterOutage(t *testing.T) {
	url, schema := pgtest.Schema(t)
	proxy := pgtest.NewProxy(t)
	a := pgtest.OpenSchema(t, url, schema)
	b := pgtest.OpenSchema(t, proxy.Via(t, url), schema)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	notices := b.Notifications(ctx)
	expect(t, notices, store.NoticeTasks)
	drain(notices)

	proxy.Cut()
	time.Sleep(3 * time.Second) // reconnects after 100, 200, 400, 800 and 1600ms fail
	proxy.Restore()
	expect(t, notices, store.NoticeTasks)
	drain(notices)

	_, _, err := a.InstanceCreate(ctx, store.InstanceCreateParams{
		Instance: store.Instance{
			ID: "after", DefinitionName: "d", DefinitionVersion: 1, Status: store.InstanceRunning,
		},
		Now: time.Now(),
	})
	if err != nil {
		t.Fatalf("creating instance: %v", err)
	}
	expect(t, notices, store.NoticeInstances)
}

// TestWriteWhileNetworkHolds: while the network to the database holds
// new connections unanswered, a write fails with a connect error once
// the connect timeout has passed, rather than waiting for ever, and is
// taken for unavailability; once the network is back writes go on.
func TestWriteWhileNetworkHolds(t *testing.T) {
	url, schema := pgtest.Schema(t)
	proxy := pgtest.NewProxy(t)
	s := pgtest.OpenSchema(t, proxy.Via(t, url), schema, postgres.WithoutNotify())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	_, _, err := s.InstanceCreate(ctx, store.InstanceCreateParams{
		Instance: store.Instance{
			ID: "held", DefinitionName: "d", DefinitionVersion: 1, Status: store.InstanceRunning,
		},
		Now: time.Now(),
	})
	if err != nil {
		t.Fatalf("creating instance: %v", err)
	}

	// The first write may find its connection closed by the cut; the
	// next needs a new one.
	proxy.Hold()
	err = s.AuditAppend(ctx, "held", time.Now(), store.AuditEvent{Type: "note"})
	if !store.IsUnavailable(err) {
		t.Fatalf("first write while the network holds: %v; want unavailability", err)
	}
	err = s.AuditAppend(ctx, "held", time.Now(), store.AuditEvent{Type: "note"})
	var connect *pgconn.ConnectError
	if !errors.As(err, &connect) || !store.IsUnavailable(err) || ctx.Err() != nil {
		t.Fatalf("write while the network holds: %v; want a connect error taken for unavailability", err)
	}
	t.Logf("write while the network holds: %v", err)

	proxy.Restore()
	if err := s.AuditAppend(ctx, "held", time.Now(), store.AuditEvent{Type: "note"}); err != nil {
		t.Fatalf("write after the network came back: %v", err)
	}
}
