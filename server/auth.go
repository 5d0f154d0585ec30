package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// Role names a set of calls an identity may make.
type Role string

// The roles. An identity may hold several.
const (
	// RoleAdmin registers, deprecates and deletes definitions, and
	// registers and deletes services.
	RoleAdmin Role = "admin"
	// RoleOperator starts instances, steers them and publishes events.
	RoleOperator Role = "operator"
	// RoleReader reads definitions, services, instances, audit logs and
	// tasks.
	RoleReader Role = "reader"
	// RoleWorker takes and reports the tasks of the identity's services.
	RoleWorker Role = "worker"
	// RoleUserTask lists and answers user tasks; the identity's name is
	// recorded as the chooser.
	RoleUserTask Role = "user_task"
)

var (
	// errUnauthenticated refuses a call without valid credentials.
	errUnauthenticated = errors.New("unauthenticated")
	// errPermissionDenied refuses a call its identity may not make.
	errPermissionDenied = errors.New("permission denied")
)

// Identity is a caller weft knows: a client certificate's common name, or
// the holder of a bearer token.
type Identity struct {
	// Name is the identity, matched against the client certificate's
	// common name.
	Name string `yaml:"name"`
	// Roles are what the identity may do.
	Roles []Role `yaml:"roles"`
	// Services are the services whose tasks a worker identity may take
	// and report.
	Services []string `yaml:"services"`
	// TokenSHA256 is the hex SHA-256 of the identity's bearer token; empty
	// for an identity that only uses a certificate.
	TokenSHA256 string `yaml:"token_sha256"`
	// Expires, when set, is when the token stops being accepted.
	Expires time.Time `yaml:"expires"`
}

func (id *Identity) has(r Role) bool { return slices.Contains(id.Roles, r) }

// Auth authenticates callers by client certificate or bearer token, and
// authorizes their calls by role.
type Auth struct {
	identities []Identity
	clientCAs  *x509.CertPool
	now        func() time.Time
}

// NewAuth returns an Auth over identities. With clientCAs set, a client
// certificate verified against them authenticates its common name.
func NewAuth(identities []Identity, clientCAs *x509.CertPool) (*Auth, error) {
	for i, id := range identities {
		if id.Name == "" {
			return nil, fmt.Errorf("identities[%d].name: required", i)
		}
		for _, r := range id.Roles {
			if !slices.Contains([]Role{RoleAdmin, RoleOperator, RoleReader, RoleWorker, RoleUserTask}, r) {
				return nil, fmt.Errorf("identities[%d].roles: unknown role %q", i, r)
			}
		}
		if id.TokenSHA256 != "" {
			// Hashes compare as lower-case hex, whatever case the file uses.
			identities[i].TokenSHA256 = strings.ToLower(id.TokenSHA256)
			if b, err := hex.DecodeString(id.TokenSHA256); err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("identities[%d].token_sha256: not a hex SHA-256", i)
			}
		}
	}

	return &Auth{identities: identities, clientCAs: clientCAs, now: time.Now}, nil
}

// LoadIdentities reads the identities file: YAML with a list under
// "identities"; docs/security.md shows one.
func LoadIdentities(path string) ([]Identity, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading identities: %w", err)
	}

	var file struct {
		Identities []Identity `yaml:"identities"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("reading identities %s: %w", path, err)
	}

	return file.Identities, nil
}

// HashToken returns the hex SHA-256 of a bearer token, as the identities
// file stores it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

type identityKey struct{}

// identityOf returns the authenticated caller of ctx; ok is false when
// the server runs without authentication.
func identityOf(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok
}

// authenticate finds the caller of ctx: by verified client certificate
// first, then by bearer token.
func (a *Auth) authenticate(ctx context.Context) (*Identity, error) {
	if id, err, ok := a.byCertificate(ctx); ok {
		return id, err
	}

	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get("authorization")
	if len(auth) == 0 {
		return nil, fmt.Errorf("no client certificate and no bearer token: %w", errUnauthenticated)
	}

	token, ok := strings.CutPrefix(auth[0], "Bearer ")
	if !ok || token == "" {
		return nil, fmt.Errorf("authorization is not \"Bearer <token>\": %w", errUnauthenticated)
	}
	sum := HashToken(token)
	for i := range a.identities {
		id := &a.identities[i]
		if id.TokenSHA256 == "" || subtle.ConstantTimeCompare([]byte(id.TokenSHA256), []byte(sum)) != 1 {
			continue
		}
		if !id.Expires.IsZero() && !a.now().Before(id.Expires) {
			return nil, fmt.Errorf("the token of %s expired at %s: %w", id.Name,
				id.Expires.Format(time.RFC3339), errUnauthenticated)
		}
		return id, nil
	}

	return nil, fmt.Errorf("unknown bearer token: %w", errUnauthenticated)
}

// byCertificate authenticates a client certificate; ok is false when the
// caller sent none (or the server does not take them).
func (a *Auth) byCertificate(ctx context.Context) (*Identity, error, bool) {
	p, found := peer.FromContext(ctx)
	if !found || a.clientCAs == nil {
		return nil, nil, false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(info.State.PeerCertificates) == 0 {
		return nil, nil, false
	}

	certs := info.State.PeerCertificates
	opts := x509.VerifyOptions{
		Roots: a.clientCAs, Intermediates: x509.NewCertPool(), CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, fmt.Errorf("client certificate not trusted: %v: %w", err, errUnauthenticated), true
	}

	cn := certs[0].Subject.CommonName
	for i := range a.identities {
		if a.identities[i].Name == cn {
			return &a.identities[i], nil, true
		}
	}

	return nil, fmt.Errorf("client certificate of %q names no configured identity: %w", cn,
		errUnauthenticated), true
}

// methodRoles says which roles may call each method; a method of
// another package (health, reflection) needs no credentials.
var methodRoles = map[string][]Role{
	"WorkflowDefinitionService/RegisterDefinition":  {RoleAdmin},
	"WorkflowDefinitionService/DeprecateDefinition": {RoleAdmin},
	"WorkflowDefinitionService/DeleteDefinition":    {RoleAdmin},
	"WorkflowDefinitionService/ValidateDefinition":  {RoleAdmin, RoleOperator, RoleReader},
	"WorkflowDefinitionService/GetDefinition":       {RoleAdmin, RoleOperator, RoleReader},
	"WorkflowDefinitionService/ListDefinitions":     {RoleAdmin, RoleOperator, RoleReader},
	"WorkflowExecutionService/":                     {RoleOperator},
	"WorkflowStateService/":                         {RoleAdmin, RoleOperator, RoleReader},
	"StepExecutionService/":                         {RoleWorker},
	"UserTaskService/ListUserTasks":                 {RoleAdmin, RoleOperator, RoleReader, RoleUserTask},
	"UserTaskService/CompleteUserTask":              {RoleOperator, RoleUserTask},
	"ServiceRegistryService/RegisterService":        {RoleAdmin},
	"ServiceRegistryService/DeleteService":          {RoleAdmin},
	"ServiceRegistryService/GetService":             {RoleAdmin, RoleOperator, RoleReader},
	"ServiceRegistryService/ListServices":           {RoleAdmin, RoleOperator, RoleReader},
}

// rolesFor returns the roles a method takes; needed is false for methods
// outside weft.v1.
func rolesFor(method string) (roles []Role, needed bool) {
	name, ok := strings.CutPrefix(method, "/weft.v1.")
	if !ok {
		return nil, false
	}
	if r, ok := methodRoles[name]; ok {
		return r, true
	}
	service, _, _ := strings.Cut(name, "/")

	return methodRoles[service+"/"], true
}

// authorize authenticates the caller of a method and checks its role; it
// returns the context carrying the identity.
func (a *Auth) authorize(ctx context.Context, method string) (context.Context, error) {
	roles, needed := rolesFor(method)
	if !needed {
		return ctx, nil
	}

	id, err := a.authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	if !slices.ContainsFunc(roles, id.has) {
		return ctx, fmt.Errorf("%s may not call %s (needs one of %v): %w", id.Name, method, roles,
			errPermissionDenied)
	}

	return context.WithValue(ctx, identityKey{}, id), nil
}

// mayServe checks that the caller of ctx is a worker of service.
func mayServe(ctx context.Context, service string) error {
	id, ok := identityOf(ctx)
	if !ok {
		return nil
	}
	if !slices.Contains(id.Services, service) {
		return fmt.Errorf("%s is not a worker of service %q: %w", id.Name, service, errPermissionDenied)
	}

	return nil
}

// mayReport checks that the caller of ctx may report the attempt ref
// names: a worker of the step's service, holding the attempt's token when
// it names the current attempt.
func (s *Server) mayReport(ctx context.Context, ref refLike) error {
	id, ok := identityOf(ctx)
	if !ok {
		return nil
	}

	service, attempt, token, err := s.stepHolder(ctx, ref.GetInstanceId(), ref.GetPointerId())
	if err != nil {
		return onField("task", err)
	}
	if !slices.Contains(id.Services, service) {
		return fmt.Errorf("%s is not a worker of service %q, which step %d is assigned to: %w",
			id.Name, service, ref.GetPointerId(), errPermissionDenied)
	}
	if int(ref.GetAttempt()) == attempt &&
		subtle.ConstantTimeCompare([]byte(ref.GetTaskToken()), []byte(token)) != 1 {
		return fmt.Errorf("the task token is not that of attempt %d: %w", attempt, errPermissionDenied)
	}

	return nil
}

// refLike is a TaskRef's getters.
type refLike interface {
	GetInstanceId() string
	GetPointerId() int64
	GetAttempt() int32
	GetTaskToken() string
}

// stepHolder returns the service, current attempt and token of a step:
// from its task row while it has one, else from the step itself.
func (s *Server) stepHolder(
	ctx context.Context, instanceID string, pointer int64,
) (service string, attempt int, token string, err error) {
	tasks, err := s.store.TaskList(ctx, instanceID)
	if err != nil {
		return "", 0, "", err
	}
	for _, t := range tasks {
		if t.PointerID == pointer {
			return t.Service, t.Attempt, t.Token, nil
		}
	}

	steps, err := s.eng.Steps(ctx, instanceID)
	if err != nil {
		return "", 0, "", err
	}
	for _, st := range steps {
		if st.ID == pointer {
			return st.Service, st.Attempt, st.Token, nil
		}
	}

	return "", 0, "", fmt.Errorf("instance %s has no step %d: %w", instanceID, pointer, errNoStep)
}

// auditRefused is the audit row type of a call refused for want of
// permission.
const auditRefused = "request_refused"

// auditRefusal records a PERMISSION_DENIED refusal in the audit log of
// the instance the request names, if it names one that exists.
// Unauthenticated calls are only logged: anyone could make them.
func (s *Server) auditRefusal(ctx context.Context, req any, method string, err error) {
	if !errors.Is(err, errPermissionDenied) {
		return
	}
	id := requestInstance(req)
	if id == "" {
		return
	}

	caller := ""
	if who, ok := identityOf(ctx); ok {
		caller = who.Name
	} else if who, aerr := s.opts.Auth.authenticate(ctx); aerr == nil {
		caller = who.Name
	}
	if !s.refusals.admit(caller+"\x00"+id+"\x00"+method, time.Now()) {
		s.log.Info("refusal not audited again", keyInstance, id, keyErr, err)
		return
	}
	data, _ := json.Marshal(map[string]string{"identity": caller, "method": method, "reason": err.Error()})

	aerr := s.store.AuditAppend(context.WithoutCancel(ctx), id, time.Now(), store.AuditEvent{
		Type: auditRefused, Data: data,
	})
	if aerr != nil && !errors.Is(aerr, store.ErrNotFound) {
		s.log.Warn("auditing a refusal failed", keyInstance, id, keyErr, aerr)
	}
}

// requestInstance finds the instance a request names: its instance_id,
// or its task's.
func requestInstance(req any) string {
	if r, ok := req.(interface{ GetInstanceId() string }); ok {
		return r.GetInstanceId()
	}
	if r, ok := req.(interface{ GetTask() *weftv1.TaskRef }); ok {
		return r.GetTask().GetInstanceId()
	}

	return ""
}

// refusalWindow is how long a refusal of one identity, instance and
// method is audited once: the rest in the window are only logged, so
// that a caller cannot grow an instance's audit log without bound.
const refusalWindow = time.Minute

// maxRefusalKeys bounds the refusals remembered in one window.
const maxRefusalKeys = 10000

// refusalLimiter remembers which refusals were audited in the current
// window; its memory is bounded by maxRefusalKeys.
type refusalLimiter struct {
	mu    sync.Mutex
	start time.Time
	seen  map[string]struct{}
}

// admit reports whether the refusal named key is the first of its window.
func (l *refusalLimiter) admit(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()

	if l.seen == nil || now.Sub(l.start) >= refusalWindow || len(l.seen) >= maxRefusalKeys {
		l.seen = map[string]struct{}{}
		l.start = now
	}
	if _, ok := l.seen[key]; ok {
		return false
	}
	l.seen[key] = struct{}{}

	return true
}
