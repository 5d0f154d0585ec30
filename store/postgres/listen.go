package postgres

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/sqlstore"
)

// Log keys of the listener.
const (
	keyChannel = "channel"
	keyErr     = "err"
	keyBackoff = "backoff"
)

// Backoff bounds of the listener's reconnects.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// subscriberBuffer is how many notices a slow subscriber may have
// pending before it misses some.
const subscriberBuffer = 16

// listener holds one connection that LISTENs on the store's channel and
// hands every notice from another sender to the subscribers. It starts
// with the first subscriber and reconnects with backoff; after a
// reconnect it hands out one notice of each kind, since some may have
// been sent while it was away.
type listener struct {
	conn    *pgx.ConnConfig
	channel string
	sender  string
	log     *slog.Logger

	mu      sync.Mutex
	subs    map[chan store.Notice]struct{}
	started bool
	stopped bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newListener(conn *pgx.ConnConfig, channel, sender string, log *slog.Logger) *listener {
	return &listener{
		conn: conn.Copy(), channel: channel, sender: sender, log: log,
		subs: make(map[chan store.Notice]struct{}),
		done: make(chan struct{}),
	}
}

// subscribe adds a subscriber until ctx ends, starting the listener with
// the first one. After stop it returns a closed channel.
func (l *listener) subscribe(ctx context.Context) <-chan store.Notice {
	ch := make(chan store.Notice, subscriberBuffer)

	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		close(ch)

		return ch
	}

	l.subs[ch] = struct{}{}
	if !l.started {
		l.started = true
		runCtx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		go l.run(runCtx)
	}
	l.mu.Unlock()

	go func() {
		<-ctx.Done()
		l.mu.Lock()
		if _, ok := l.subs[ch]; ok {
			delete(l.subs, ch)
			close(ch)
		}
		l.mu.Unlock()
	}()

	return ch
}

// stop ends the listener and closes every subscriber's channel.
func (l *listener) stop() {
	l.mu.Lock()
	started := l.started
	cancel := l.cancel
	l.stopped = true
	l.mu.Unlock()

	if started {
		cancel()
		<-l.done
	}

	l.mu.Lock()
	for ch := range l.subs {
		delete(l.subs, ch)
		close(ch)
	}
	l.mu.Unlock()
}

// run listens until ctx ends, reconnecting after errors.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)

	backoff := minBackoff
	for ctx.Err() == nil {
		connected, err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}

		if connected {
			backoff = minBackoff
		}

		l.log.Warn("listening for notices failed", keyChannel, l.channel, keyErr, err,
			keyBackoff, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}

		backoff = min(backoff*2, maxBackoff)
	}
}

// listen connects, LISTENs and hands out notices until an error;
// connected says whether it got as far as listening.
func (l *listener) listen(ctx context.Context) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, l.conn)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // Nothing to do on failure.

	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return false, err
	}

	l.publish(store.NoticeInstances)
	l.publish(store.NoticeTasks)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}

		kind, sender, ok := sqlstore.ParseNotice(n.Payload)
		if ok && sender != l.sender {
			l.publish(kind)
		}
	}
}

// publish hands a notice to every subscriber that has room for it.
func (l *listener) publish(kind store.Notice) {
	l.mu.Lock()
	defer l.mu.Unlock()

	for ch := range l.subs {
		select {
		case ch <- kind:
		default:
		}
	}
}
