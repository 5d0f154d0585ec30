package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weftworks/weft/store"
)

// serviceSettings are the columns a registry entry sets.
const serviceSettings = `name, mode, addresses, tls_enabled, tls_ca_file, tls_cert_file,
	tls_key_file, tls_server_name, concurrency, rate, burst, dispatch_timeout, dispatch_limit`

const serviceColumns = serviceSettings + `, created_at, updated_at`

func scanService(r rowScanner) (store.Service, error) {
	var s store.Service
	var addresses string
	var timeout int64
	err := r.Scan(&s.Name, &s.Mode, &addresses, boolCol{&s.TLS.Enabled}, &s.TLS.CAFile,
		&s.TLS.CertFile, &s.TLS.KeyFile, &s.TLS.ServerName, &s.Concurrency, &s.Rate, &s.Burst,
		&timeout, &s.DispatchLimit, timeCol{&s.CreatedAt}, timeCol{&s.UpdatedAt})
	if err != nil {
		return store.Service{}, err
	}

	s.DispatchTimeout = time.Duration(timeout) * time.Millisecond
	if err := json.Unmarshal([]byte(addresses), &s.Addresses); err != nil {
		return store.Service{}, fmt.Errorf("reading addresses of service %s: %w", s.Name, err)
	}

	return s, nil
}

// bucketSize is the token bucket's size for a burst setting: 0 means 1.
func bucketSize(burst int) float64 {
	return float64(max(burst, 1))
}

// ServicePut validates a registry entry and creates or replaces it in one
// statement, keeping CreatedAt. A new entry starts with a full token
// bucket; a replaced one keeps its bucket unless Rate or Burst changed,
// when it starts full again. Addresses are stored as given, in order.
func (s *Store) ServicePut(
	ctx context.Context, svc store.Service, now time.Time,
) (store.Service, error) {
	if err := svc.Validate(); err != nil {
		return store.Service{}, fmt.Errorf("putting service %s: %w", svc.Name, err)
	}

	if svc.Addresses == nil {
		svc.Addresses = []string{}
	}

	addresses, err := json.Marshal(svc.Addresses)
	if err != nil {
		return store.Service{}, fmt.Errorf("putting service %s: %w", svc.Name, err)
	}

	svc.UpdatedAt = fromMS(ms(now))
	args := []any{svc.Name, string(svc.Mode), string(addresses), boolInt(svc.TLS.Enabled),
		svc.TLS.CAFile, svc.TLS.CertFile, svc.TLS.KeyFile, svc.TLS.ServerName, svc.Concurrency,
		svc.Rate, svc.Burst, svc.DispatchTimeout.Milliseconds(), svc.DispatchLimit,
		bucketSize(svc.Burst), ms(now), ms(now), ms(now)}
	err = s.write(ctx, func(ctx context.Context, w *writer) error {
		err := w.queryRow(ctx, `INSERT INTO services (`+serviceSettings+`,
			tokens, tokens_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET mode = excluded.mode,
			addresses = excluded.addresses, tls_enabled = excluded.tls_enabled,
			tls_ca_file = excluded.tls_ca_file, tls_cert_file = excluded.tls_cert_file,
			tls_key_file = excluded.tls_key_file, tls_server_name = excluded.tls_server_name,
			concurrency = excluded.concurrency, rate = excluded.rate, burst = excluded.burst,
			dispatch_timeout = excluded.dispatch_timeout,
			dispatch_limit = excluded.dispatch_limit, updated_at = excluded.updated_at,
			tokens = CASE WHEN services.rate = excluded.rate AND services.burst = excluded.burst
				THEN services.tokens ELSE excluded.tokens END,
			tokens_at = CASE WHEN services.rate = excluded.rate AND services.burst = excluded.burst
				THEN services.tokens_at ELSE excluded.tokens_at END
			RETURNING created_at`, args...).Scan(timeCol{&svc.CreatedAt})
		if err == nil {
			w.wrote(1, args)
		}

		return err
	})
	if err != nil {
		return store.Service{}, fmt.Errorf("putting service %s: %w", svc.Name, err)
	}

	return svc, nil
}

// ServiceGet reads a registry entry; ErrNotFound when there is none.
func (s *Store) ServiceGet(ctx context.Context, name string) (store.Service, error) {
	svc, err := scanService(s.readRow(ctx, `SELECT `+serviceColumns+` FROM services
		WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}

	if err != nil {
		return store.Service{}, fmt.Errorf("getting service %s: %w", name, err)
	}

	return svc, nil
}

// ServiceList lists the registry ordered by name.
func (s *Store) ServiceList(ctx context.Context) ([]store.Service, error) {
	rows, err := s.readQuery(ctx, `SELECT `+serviceColumns+` FROM services ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}

	services, err := collect(rows, scanService)
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}

	return services, nil
}

// ServiceDelete removes a registry entry; ErrNotFound when there is none
// and ErrInUse while a task of the service is stored, claimed or not.
func (s *Store) ServiceDelete(ctx context.Context, name string) error {
	err := s.write(ctx, func(ctx context.Context, w *writer) error {
		var used int
		err := w.queryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM dispatch_tasks
			WHERE service = ? LIMIT 1) u`, name).Scan(&used)
		if err != nil {
			return err
		}

		if used > 0 {
			return fmt.Errorf("tasks of it are queued or held: %w", store.ErrInUse)
		}

		n, err := w.exec(ctx, `DELETE FROM services WHERE name = ?`, name)
		if err != nil {
			return err
		}

		if n == 0 {
			return store.ErrNotFound
		}

		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting service %s: %w", name, err)
	}

	return nil
}

// serviceLimit is a limited service's allowance in one claim.
type serviceLimit struct {
	name        string
	concurrency int
	rate        float64
	burst       int
	// tokens is the bucket's level at tokensAt (unix milliseconds).
	tokens   float64
	tokensAt int64
	// allow is how many tasks the claim may still take.
	allow int
}

// serviceLimits reads, and on databases that lock rows locks in name
// order, the registry rows of the services (sorted, distinct) that have a
// concurrency cap or a rate, and works out how many tasks of each a claim
// of up to limit at now may take.
func (w *writer) serviceLimits(
	ctx context.Context, services []string, limit int, now time.Time,
) (map[string]*serviceLimit, error) {
	args := make([]any, 0, len(services))
	for _, svc := range services {
		args = append(args, svc)
	}

	rows, err := w.query(ctx, `SELECT name, concurrency, rate, burst, tokens, tokens_at
		FROM services WHERE name IN (`+placeholders(len(services))+`)
		AND (concurrency > 0 OR rate > 0) ORDER BY name`+w.s.dialect.ForUpdate, args...)
	if err != nil {
		return nil, fmt.Errorf("reading service limits: %w", err)
	}

	list, err := collect(rows, func(r rowScanner) (*serviceLimit, error) {
		l := &serviceLimit{}
		err := r.Scan(&l.name, &l.concurrency, &l.rate, &l.burst, &l.tokens, &l.tokensAt)

		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading service limits: %w", err)
	}

	limits := make(map[string]*serviceLimit, len(list))
	for _, l := range list {
		if err := w.allowance(ctx, l, limit, now); err != nil {
			return nil, err
		}

		limits[l.name] = l
	}

	return limits, nil
}

// allowance sets l.allow: at most limit, no more than the concurrency cap
// leaves free (claimed, unexpired tasks count against it), and no more
// than the whole tokens the bucket holds once refilled to now.
func (w *writer) allowance(ctx context.Context, l *serviceLimit, limit int, now time.Time) error {
	l.allow = limit
	if l.concurrency > 0 {
		var held int
		err := w.queryRow(ctx, `SELECT COUNT(*) FROM dispatch_tasks
			WHERE service = ? AND claimed_by <> '' AND claim_expires > ?`,
			l.name, ms(now)).Scan(&held)
		if err != nil {
			return fmt.Errorf("counting claimed tasks of service %s: %w", l.name, err)
		}

		l.allow = min(l.allow, max(l.concurrency-held, 0))
	}

	if l.rate > 0 {
		at := max(l.tokensAt, ms(now))
		elapsed := float64(at-l.tokensAt) / 1000
		l.tokens = math.Min(bucketSize(l.burst), l.tokens+l.rate*elapsed)
		l.tokensAt = at
		// A bucket refilled to a whole token in float arithmetic may
		// hold a hair less; the epsilon counts it whole.
		l.allow = min(l.allow, int(math.Floor(l.tokens+1e-9)))
	}

	return nil
}

// spendTokens takes n claimed tasks out of a rated service's bucket.
func (w *writer) spendTokens(ctx context.Context, l *serviceLimit, n int) error {
	if l.rate <= 0 || n == 0 {
		return nil
	}

	l.tokens = math.Max(l.tokens-float64(n), 0)
	_, err := w.exec(ctx, `UPDATE services SET tokens = ?, tokens_at = ? WHERE name = ?`,
		l.tokens, l.tokensAt, l.name)
	if err != nil {
		return fmt.Errorf("spending tokens of service %s: %w", l.name, err)
	}

	return nil
}
