package store

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ServiceMode says how weft hands a service its tasks.
type ServiceMode string

// Service modes.
const (
	ServicePull ServiceMode = "pull" // workers poll StepExecutionService
	ServicePush ServiceMode = "push" // weft calls the service's StepWorkerService
)

// ServiceTLS is how weft dials a push service.
type ServiceTLS struct {
	Enabled    bool   // dial with TLS; plaintext otherwise
	CAFile     string // PEM roots to trust; empty: the system's
	CertFile   string // client certificate for mTLS, with KeyFile
	KeyFile    string
	ServerName string // name checked in the service's certificate, when not the host
}

// Service is a registry entry.
type Service struct {
	Name        string
	Mode        ServiceMode
	Addresses   []string // push: host:port targets of StepWorkerService, at least one
	TLS         ServiceTLS
	Concurrency int     // attempts held at once, cluster-wide; 0 no cap
	Rate        float64 // attempts started (claims) per second, cluster-wide; 0 no cap
	Burst       int     // token bucket size for Rate; 0 means 1
	// DispatchTimeout is the deadline of one ExecuteTask call to a push
	// service; 0 means DefaultDispatchTimeout.
	DispatchTimeout time.Duration
	// DispatchLimit is how many calls an attempt of a push service gets
	// while the service is unreachable before the attempt fails; 0 means
	// DefaultDispatchLimit.
	DispatchLimit        int
	CreatedAt, UpdatedAt time.Time
}

// Defaults of a push service's dispatch settings left at zero.
const (
	DefaultDispatchTimeout = 10 * time.Second
	DefaultDispatchLimit   = 40
)

// Timeout is the service's dispatch timeout, or the default.
func (s Service) Timeout() time.Duration {
	if s.DispatchTimeout > 0 {
		return s.DispatchTimeout
	}

	return DefaultDispatchTimeout
}

// Limit is the service's dispatch limit, or the default.
func (s Service) Limit() int {
	if s.DispatchLimit > 0 {
		return s.DispatchLimit
	}

	return DefaultDispatchLimit
}

// validServiceName matches a service name. Definitions accept the same
// names in a task step's service field (see the definition package).
var validServiceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,127}$`)

// ValidServiceName reports whether name is a well-formed service name: a
// letter, then up to 127 letters, digits, '_', '.' or '-'.
func ValidServiceName(name string) bool {
	return validServiceName.MatchString(name)
}

// Validate checks a registry entry. The error is a *FieldError naming
// the first field at fault.
func (s Service) Validate() error {
	if err := s.validateName(); err != nil {
		return err
	}

	if err := s.validateMode(); err != nil {
		return err
	}

	if err := s.validateLimits(); err != nil {
		return err
	}

	return s.TLS.validate(s.Mode)
}

// validateName checks the name.
func (s Service) validateName() error {
	switch {
	case s.Name == "":
		return &FieldError{Field: "name", Reason: "required"}
	case !ValidServiceName(s.Name):
		return &FieldError{Field: "name", Reason: fmt.Sprintf(
			"%q is not a service name (a letter, then up to 127 letters, digits, '_', '.' or '-')",
			s.Name)}
	}

	return nil
}

// validateMode checks the mode and the addresses it needs.
func (s Service) validateMode() error {
	switch s.Mode {
	case ServicePull:
		if len(s.Addresses) > 0 {
			return &FieldError{Field: "addresses", Reason: "a pull service has none"}
		}

		return nil
	case ServicePush:
	case "":
		return &FieldError{Field: "mode", Reason: "required (pull or push)"}
	default:
		return &FieldError{
			Field: "mode", Reason: fmt.Sprintf("%q is neither pull nor push", s.Mode),
		}
	}

	if len(s.Addresses) == 0 {
		return &FieldError{Field: "addresses", Reason: "a push service needs at least one"}
	}

	seen := make(map[string]bool, len(s.Addresses))
	for i, a := range s.Addresses {
		field := "addresses[" + strconv.Itoa(i) + "]"
		if err := validAddress(a); err != nil {
			return &FieldError{Field: field, Reason: err.Error()}
		}

		if seen[a] {
			return &FieldError{Field: field, Reason: fmt.Sprintf("%q is listed twice", a)}
		}

		seen[a] = true
	}

	return nil
}

// Bounds of a registry entry's limits.
const (
	maxServiceLimit    = 1_000_000
	minRate            = 0.001
	maxDispatchTimeout = time.Hour
	maxDispatchLimit   = 1000
)

// validAddress checks that a is host:port with a host and a port number.
func validAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}

	if host == "" {
		return fmt.Errorf("%q has no host", a)
	}

	if strings.ContainsFunc(host, unicode.IsSpace) {
		return fmt.Errorf("%q has a space in its host", a)
	}

	if strings.HasPrefix(port, "0") {
		return fmt.Errorf("%q has a port number with a leading zero", a)
	}

	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q has no port number from 1 to 65535", a)
	}

	return nil
}

// validateLimits checks the numeric limits.
func (s Service) validateLimits() error {
	switch {
	case s.Concurrency < 0:
		return &FieldError{Field: "concurrency", Reason: "must not be negative"}
	case math.IsNaN(s.Rate) || math.IsInf(s.Rate, 0):
		return &FieldError{Field: "rate", Reason: "must be a finite number"}
	case s.Rate < 0:
		return &FieldError{Field: "rate", Reason: "must not be negative"}
	case s.Burst < 0:
		return &FieldError{Field: "burst", Reason: "must not be negative"}
	case s.DispatchTimeout < 0:
		return &FieldError{Field: "dispatch_timeout", Reason: "must not be negative"}
	case s.DispatchLimit < 0:
		return &FieldError{Field: "dispatch_limit", Reason: "must not be negative"}
	case s.Concurrency > maxServiceLimit:
		return &FieldError{Field: "concurrency", Reason: fmt.Sprintf("at most %d", maxServiceLimit)}
	case s.Rate > maxServiceLimit || s.Rate > 0 && s.Rate < minRate:
		return &FieldError{Field: "rate", Reason: fmt.Sprintf("from %g to %d a second, or 0 for none",
			minRate, maxServiceLimit)}
	case s.Burst > maxServiceLimit:
		return &FieldError{Field: "burst", Reason: fmt.Sprintf("at most %d", maxServiceLimit)}
	case s.DispatchTimeout%time.Millisecond != 0 || s.DispatchTimeout > maxDispatchTimeout:
		return &FieldError{Field: "dispatch_timeout", Reason: fmt.Sprintf(
			"whole milliseconds, at most %s", maxDispatchTimeout)}
	case s.DispatchLimit > maxDispatchLimit:
		return &FieldError{Field: "dispatch_limit", Reason: fmt.Sprintf("at most %d", maxDispatchLimit)}
	case s.Burst > 0 && s.Rate == 0:
		return &FieldError{Field: "burst", Reason: "needs a rate"}
	case s.Mode == ServicePull && s.DispatchTimeout != 0:
		return &FieldError{Field: "dispatch_timeout", Reason: "a pull service is not dialled; it has none"}
	case s.Mode == ServicePull && s.DispatchLimit != 0:
		return &FieldError{Field: "dispatch_limit", Reason: "a pull service is not dialled; it has none"}
	}

	return nil
}

// validate checks the TLS settings of a service of the mode.
func (t ServiceTLS) validate(mode ServiceMode) error {
	switch {
	case mode == ServicePull && t != ServiceTLS{}:
		return &FieldError{Field: "tls", Reason: "a pull service is not dialled; it has none"}
	case !t.Enabled && t != ServiceTLS{}:
		return &FieldError{Field: "tls.enabled", Reason: "must be set with the other tls fields"}
	case t.CertFile != "" && t.KeyFile == "":
		return &FieldError{Field: "tls.key_file", Reason: "required with tls.cert_file"}
	case t.KeyFile != "" && t.CertFile == "":
		return &FieldError{Field: "tls.cert_file", Reason: "required with tls.key_file"}
	}

	return nil
}
