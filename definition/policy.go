package definition

import (
	"math"
	"strconv"
	"time"
)

// packageRetry is the retry policy used where neither a step nor the
// definition sets one.
var packageRetry = Retry{
	MaxAttempts:        DefaultMaxAttempts,
	InitialInterval:    DefaultInitialInterval,
	BackoffCoefficient: DefaultBackoffCoefficient,
	MaxInterval:        DefaultMaxInterval,
}

// defaults checks the definition's defaults and resolves them over the
// package's.
func (c *compiler) defaults(d *Defaults) {
	c.retry = packageRetry
	c.onFailure = FailInstance
	if d == nil {
		return
	}

	if d.Retry != nil {
		c.checkRetry("defaults.retry", d.Retry)
		c.retry = overlayRetry(c.retry, d.Retry)
		c.checkIntervals("defaults.retry", c.retry)
	}

	if d.Timeouts != nil {
		c.checkTimeouts("defaults.timeouts", d.Timeouts)
		c.limits = overlayLimits(c.limits, d.Timeouts)
	}

	if c.checkAction("defaults.on_failure", d.OnFailure) && d.OnFailure != "" {
		c.onFailure = d.OnFailure
	}
}

// taskPolicy checks a task step's own policy and resolves it over the
// defaults.
func (c *compiler) taskPolicy(n *Node) {
	s := n.Step
	n.Retry = c.retry
	if s.Retry != nil {
		at := fieldPath(n.Path, "retry")
		c.checkRetry(at, s.Retry)
		n.Retry = overlayRetry(c.retry, s.Retry)
		c.checkIntervals(at, n.Retry)
	}

	n.Timeouts = c.limits
	if s.Timeouts != nil {
		c.checkTimeouts(fieldPath(n.Path, "timeouts"), s.Timeouts)
		n.Timeouts = overlayLimits(c.limits, s.Timeouts)
	}

	n.OnFailure = c.onFailure
	if c.sagaDepth > 0 {
		n.OnFailure = Compensate
	}
	if c.checkAction(fieldPath(n.Path, "on_failure"), s.OnFailure) && s.OnFailure != "" {
		n.OnFailure = s.OnFailure
	}
}

// written reports whether the source wrote the field, or it is not zero.
func (p *RetryPolicy) written(field string, nonZero bool) bool {
	return nonZero || p.keys[field]
}

// checkRetry records the faults of a retry policy at path.
func (c *compiler) checkRetry(path string, p *RetryPolicy) {
	if p.written("max_attempts", p.MaxAttempts != 0) {
		at := fieldPath(path, "max_attempts")
		switch {
		case p.MaxAttempts < 1:
			c.fs.add(at, "must be at least 1 (1 means no retry), got %d", p.MaxAttempts)
		case p.MaxAttempts > MaxAttemptsLimit:
			c.fs.add(at, "%d is over the limit of %d", p.MaxAttempts, MaxAttemptsLimit)
		}
	}

	c.interval(fieldPath(path, "initial_interval"), p.InitialInterval)
	c.interval(fieldPath(path, "max_interval"), p.MaxInterval)

	coef := p.BackoffCoefficient
	if p.written("backoff_coefficient", coef != 0) && (!(coef >= 1) || math.IsInf(coef, 0)) {
		c.fs.add(fieldPath(path, "backoff_coefficient"), "must be at least 1, got %s",
			formatFloat(coef))
	}

	if !(p.Jitter >= 0 && p.Jitter <= 1) {
		c.fs.add(fieldPath(path, "jitter"), "must be between 0 and 1, got %s",
			formatFloat(p.Jitter))
	}

	for i, code := range p.NonRetryable {
		if code == "" {
			c.fs.add(indexPath(fieldPath(path, "non_retryable"), i), "empty error code")
		}
	}
}

// checkIntervals refuses a resolved policy whose max interval is below
// its initial interval.
func (c *compiler) checkIntervals(path string, r Retry) {
	if r.MaxInterval < r.InitialInterval {
		c.fs.add(fieldPath(path, "max_interval"), "%s is less than initial_interval %s",
			r.MaxInterval, r.InitialInterval)
	}
}

// interval records the fault of a duration field that may be empty.
func (c *compiler) interval(path, src string) {
	if src == "" {
		return
	}

	d, err := time.ParseDuration(src)
	switch {
	case err != nil:
		c.fs.add(path, "not a duration: %q", src)
	case d < 0:
		c.fs.add(path, "must not be negative, got %s", src)
	}
}

// checkTimeouts records the faults of a timeouts block at path.
func (c *compiler) checkTimeouts(path string, t *Timeouts) {
	c.interval(fieldPath(path, "start_to_close"), t.StartToClose)
	c.interval(fieldPath(path, "heartbeat"), t.Heartbeat)
	c.interval(fieldPath(path, "schedule_to_start"), t.ScheduleToStart)
}

// checkAction reports whether a failure action is empty or known, and
// records a fault when it is not.
func (c *compiler) checkAction(path string, a FailureAction) bool {
	switch a {
	case "", FailInstance, SuspendInstance, TerminateInstance, Compensate:
		return true
	}

	c.fs.add(path, "unknown action %q (want fail, suspend, terminate or compensate)", a)
	return false
}

// overlayRetry returns base with the fields p sets replaced.
func overlayRetry(base Retry, p *RetryPolicy) Retry {
	r := base
	if p.written("max_attempts", p.MaxAttempts != 0) {
		r.MaxAttempts = p.MaxAttempts
	}
	if d, ok := parseDuration(p.InitialInterval); ok {
		r.InitialInterval = d
	}
	if p.written("backoff_coefficient", p.BackoffCoefficient != 0) {
		r.BackoffCoefficient = p.BackoffCoefficient
	}
	if d, ok := parseDuration(p.MaxInterval); ok {
		r.MaxInterval = d
	}
	if p.written("jitter", p.Jitter != 0) {
		r.Jitter = p.Jitter
	}
	if p.written("non_retryable", p.NonRetryable != nil) {
		r.NonRetryable = append([]string(nil), p.NonRetryable...)
	}

	return r
}

// overlayLimits returns base with the timeouts t sets replaced.
func overlayLimits(base Limits, t *Timeouts) Limits {
	l := base
	if d, ok := parseDuration(t.StartToClose); ok {
		l.StartToClose = d
	}
	if d, ok := parseDuration(t.Heartbeat); ok {
		l.Heartbeat = d
	}
	if d, ok := parseDuration(t.ScheduleToStart); ok {
		l.ScheduleToStart = d
	}

	return l
}

// parseDuration reads a set, valid, non-negative duration.
func parseDuration(src string) (time.Duration, bool) {
	if src == "" {
		return 0, false
	}

	d, err := time.ParseDuration(src)
	return d, err == nil && d >= 0
}

// formatFloat renders f with as few digits as it needs.
func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
