// Package store defines weft's persistence seam: the domain records the
// engine keeps and the Store interface that the SQLite and PostgreSQL
// implementations satisfy. Every write that touches an instance is
// atomic and carries its audit rows; the implementation groups several
// writes into one database commit when they arrive together.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors every implementation returns (wrapped) so callers can
// tell the cases apart with errors.Is.
var (
	// ErrNotFound means the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists means a record with that identity exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrLeaseLost means the instance's lease epoch moved on or expired:
	// the writer no longer owns the instance and must drop its copy.
	ErrLeaseLost = errors.New("lease lost")
	// ErrInUse means a definition version still has instances.
	ErrInUse = errors.New("in use")
	// ErrDeprecated means a definition version takes no new starts.
	ErrDeprecated = errors.New("deprecated")
	// ErrConflict means a step changed after the engine loaded it (a
	// report, a claim or a delivery came in): load again and redo.
	ErrConflict = errors.New("conflict")
	// ErrLocked means another process holds the database (SQLite).
	ErrLocked = errors.New("database locked by another process")
	// ErrInvalidPageToken means a page token was not made by this store.
	ErrInvalidPageToken = errors.New("invalid page token")
	// ErrInvalid means a record was refused as malformed; the error is a
	// *FieldError naming the field.
	ErrInvalid = errors.New("invalid")
)

// FieldError refuses one field of a record. It wraps ErrInvalid.
type FieldError struct {
	// Field is the field's path in snake case, as in "addresses[1]" or
	// "tls.key_file".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error returns the field and the reason.
func (e *FieldError) Error() string {
	return e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error {
	return ErrInvalid
}

// InstanceStatus is the state of a workflow instance.
type InstanceStatus string

// Instance statuses; see the design brief for the allowed moves.
const (
	InstanceRunning    InstanceStatus = "running"
	InstancePaused     InstanceStatus = "paused"
	InstanceCancelling InstanceStatus = "cancelling"
	InstanceCompleted  InstanceStatus = "completed"
	InstanceFailed     InstanceStatus = "failed"
	InstanceCancelled  InstanceStatus = "cancelled"
	InstanceTerminated InstanceStatus = "terminated"
)

// Final reports whether the status admits no further work. Failed is
// final too, though a retry may later make the instance run again.
func (s InstanceStatus) Final() bool {
	switch s {
	case InstanceCompleted, InstanceFailed, InstanceCancelled, InstanceTerminated:
		return true
	}

	return false
}

// StepStatus is the state of one execution pointer.
type StepStatus string

// Step statuses.
const (
	StepPending     StepStatus = "pending"
	StepDispatched  StepStatus = "dispatched"
	StepRunning     StepStatus = "running"
	StepSleeping    StepStatus = "sleeping"
	StepWaiting     StepStatus = "waiting"
	StepCompleted   StepStatus = "completed"
	StepFailed      StepStatus = "failed"
	StepSkipped     StepStatus = "skipped"
	StepCancelled   StepStatus = "cancelled"
	StepCompensated StepStatus = "compensated"
)

// Final reports whether the pointer has finished.
func (s StepStatus) Final() bool {
	switch s {
	case StepCompleted, StepFailed, StepSkipped, StepCancelled, StepCompensated:
		return true
	}

	return false
}

// DefinitionStatus says whether a version takes new starts.
type DefinitionStatus string

// Definition statuses.
const (
	DefinitionActive     DefinitionStatus = "active"
	DefinitionDeprecated DefinitionStatus = "deprecated"
)

// Definition is one registered version of a workflow definition.
type Definition struct {
	Name    string
	Version int
	// Source is the definition as canonical JSON.
	Source    json.RawMessage
	Status    DefinitionStatus
	CreatedAt time.Time
}

// Instance is a workflow instance row.
type Instance struct {
	ID                string
	DefinitionName    string
	DefinitionVersion int
	Status            InstanceStatus
	// Reason says why the instance is paused, failed, cancelled or
	// terminated.
	Reason string
	Input  json.RawMessage
	// Data is the instance data that steps read and write.
	Data   json.RawMessage
	Output json.RawMessage
	// Error is the error that failed the instance, as JSON.
	Error json.RawMessage
	// StartKey is the idempotency key the instance was started with.
	StartKey string
	// State is the engine's own small bookkeeping, opaque to the store.
	State     json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
	// EndedAt is zero until the instance reaches a final status.
	EndedAt time.Time
	// LastSeq is the highest audit seq written for the instance.
	LastSeq int64
	// NextPointer is the id the next new step row takes.
	NextPointer int64

	// Lease: the node that may advance the instance, its epoch (bumped on
	// every claim) and when the lease expires.
	LeaseOwner   string
	LeaseEpoch   int64
	LeaseExpires time.Time
	// Wake counts inputs (reports, deliveries) that arrived; the engine
	// passes the value it saw back in its transition so that an input
	// arriving meanwhile leaves the instance runnable.
	Wake int64
	// DueAt is when the instance next has runnable work; zero for none.
	DueAt time.Time
}

// Step is an execution pointer: one activation of a definition step.
type Step struct {
	InstanceID string
	// ID numbers pointers within the instance, from 1.
	ID int64
	// StepID is the definition step's id (or definition.RootID, ...).
	StepID string
	// ParentID is the pointer this one reports to; 0 for top pointers.
	ParentID int64
	// Slot is the branch, item or iteration index under the parent.
	Slot   int
	Status StepStatus
	// Attempt is the current attempt number, from 1, never decreasing.
	Attempt int
	// Service and Action are set on task steps.
	Service string
	Action  string
	// Assignee is set on user task steps: who is asked. A waiting step
	// with an assignee is an open user task.
	Assignee string
	Input    json.RawMessage
	Output   json.RawMessage
	// Error is the last error, as JSON.
	Error json.RawMessage
	// State is the engine's bookkeeping for the pointer (block position,
	// counters, scope), opaque to the store.
	State json.RawMessage
	// Token is the current attempt's task token.
	Token string
	// Work marks a pointer the engine has to look at: a new pointer not
	// yet started, or one holding a report.
	Work bool
	// Report is the outcome accepted for the current attempt; nil until
	// one arrives. It stays after the engine applies it (Work cleared),
	// so a duplicate can be answered with it; a new attempt clears it.
	Report *Report
	// Rev counts writes to the row; the engine's writes compare it.
	Rev       int64
	CreatedAt time.Time
	StartedAt time.Time
	EndedAt   time.Time
}

// ReportKind is what a report says of an attempt.
type ReportKind string

// Report kinds.
const (
	ReportCompleted ReportKind = "completed"
	ReportFailed    ReportKind = "failed"
	// ReportEvent is an event delivered to a waiting pointer.
	ReportEvent ReportKind = "event"
	// ReportCancel asks the instance to cancel (a parent cancelling its
	// sub-workflow child). It is accepted for any non-final step of a
	// non-final instance whatever its attempt, status or token.
	ReportCancel ReportKind = "cancel"
	// ReportChoice is a person's answer to a user task. Unlike the
	// others it is accepted for a step that is waiting, not running.
	ReportChoice ReportKind = "choice"
)

// Report is an outcome accepted for a pointer's current attempt.
type Report struct {
	Kind    ReportKind
	Attempt int
	Output  json.RawMessage
	// Error is set on failed reports.
	Error *StepError
	// EventID is set on event reports.
	EventID int64
	At      time.Time
}

// StepError is a failure reported by a service or made by the engine.
type StepError struct {
	Code      string `json:"code,omitempty"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// AuditEvent is one row of an instance's audit log.
type AuditEvent struct {
	InstanceID string
	// Seq numbers the instance's audit rows from 1 without gaps; the
	// store assigns it.
	Seq       int64
	Type      string
	StepID    string
	PointerID int64
	Attempt   int
	Data      json.RawMessage
	At        time.Time
}

// TimerKind says what a timer is for.
type TimerKind string

// Timer kinds.
const (
	TimerDelay           TimerKind = "delay"
	TimerRetry           TimerKind = "retry"
	TimerStartToClose    TimerKind = "start_to_close"
	TimerHeartbeat       TimerKind = "heartbeat"
	TimerScheduleToStart TimerKind = "schedule_to_start"
	TimerWaitTimeout     TimerKind = "wait_timeout"
	TimerDeadline        TimerKind = "deadline"
	TimerCancelGrace     TimerKind = "cancel_grace"
)

// Timer is a durable wake-up for one pointer (or the instance, with
// PointerID 0).
type Timer struct {
	InstanceID string
	PointerID  int64
	Kind       TimerKind
	// Attempt is the attempt the timer belongs to, for attempt timers.
	Attempt int
	FireAt  time.Time
	// WhilePaused timers fire while the instance is paused; the others
	// wait for resume.
	WhilePaused bool
}

// TimerKey names timers to delete: every timer of the pointer, or only
// those of Kind when it is set.
type TimerKey struct {
	PointerID int64
	Kind      TimerKind
}

// Task is a dispatch row: an attempt of a task step waiting for, or held
// by, a worker.
type Task struct {
	ID             int64
	InstanceID     string
	PointerID      int64
	StepID         string
	Attempt        int
	Service        string
	Action         string
	Input          json.RawMessage
	IdempotencyKey string
	Token          string
	// VisibleAt is when the task may next be claimed.
	VisibleAt time.Time
	// ClaimedBy and ClaimExpires hold the worker's claim.
	ClaimedBy    string
	ClaimExpires time.Time
	// Claims counts the claims taken on this attempt, less those given
	// back Unsent.
	Claims int
	// StartToClose and Heartbeat are the attempt's limits, applied when
	// the task is first claimed; 0 for none.
	StartToClose time.Duration
	Heartbeat    time.Duration
	// Deadline is when the attempt's start-to-close cap ends, zero until
	// claimed or when there is none.
	Deadline  time.Time
	CreatedAt time.Time
}

// Subscription is a wait for an event by a pointer.
type Subscription struct {
	InstanceID string
	PointerID  int64
	Name       string
	Key        string
	// AsOf is the earliest event time the wait takes.
	AsOf      time.Time
	CreatedAt time.Time
}

// Event is a published, durable event.
type Event struct {
	ID   int64
	Name string
	Key  string
	Data json.RawMessage
	// Time is when the event becomes visible to waits.
	Time time.Time
	// InstanceID, when set, limits delivery to that instance.
	InstanceID  string
	PublishedAt time.Time
}

// Stats are the store's counters since it was opened.
type Stats struct {
	Commits      int64
	Transitions  int64
	RowsWritten  int64
	BytesWritten int64
	// RowsLoaded counts the rows InstanceLoad returned: the instance,
	// its steps and its timers.
	RowsLoaded int64
}

// Notice says what kind of work another node made ready.
type Notice string

// Notices.
const (
	// NoticeInstances: an instance became runnable.
	NoticeInstances Notice = "instances"
	// NoticeTasks: a dispatch task became claimable.
	NoticeTasks Notice = "tasks"
)

// Notifier is implemented by stores that tell a node about work other
// nodes sharing the database made ready (PostgreSQL's LISTEN/NOTIFY).
// The engine wakes its loops on each notice; it goes on polling too, so
// a lost notice only delays work by up to the poll interval.
type Notifier interface {
	// Notifications returns a channel of the notices sent by other
	// nodes from now on; it is closed when ctx ends. A receiver that
	// falls behind misses notices rather than blocking the store.
	Notifications(ctx context.Context) <-chan Notice
}

// Store is the persistence every weft node uses. All times the caller
// passes come from the engine's clock; lease expiry is checked against
// the database clock.
type Store interface {
	// DefinitionCreate stores a new version; ErrAlreadyExists when the
	// (name, version) exists.
	DefinitionCreate(ctx context.Context, d Definition) error
	// DefinitionGet returns a version; version 0 means the newest
	// version whatever its status.
	DefinitionGet(ctx context.Context, name string, version int) (Definition, error)
	// DefinitionList lists every version, of one name when name is set,
	// ordered by name then version.
	DefinitionList(ctx context.Context, name string) ([]Definition, error)
	// DefinitionSetStatus deprecates or reactivates a version.
	DefinitionSetStatus(ctx context.Context, name string, version int, s DefinitionStatus) error
	// DefinitionDelete removes a version; ErrInUse while any instance of
	// it is stored, finished or not: (name, version) names one content
	// for as long as an instance may point at it.
	DefinitionDelete(ctx context.Context, name string, version int) error

	// InstanceCreate stores a new instance with its first steps and
	// audit rows, due at once. With a start key it is idempotent: an
	// instance started with the same definition name and key and equal
	// input is returned with created false; different input is
	// ErrAlreadyExists.
	InstanceCreate(ctx context.Context, p InstanceCreateParams) (inst Instance, created bool, err error)
	// InstanceGet reads one instance.
	InstanceGet(ctx context.Context, id string) (Instance, error)
	// InstanceList lists instances by filter, newest first, with paging.
	InstanceList(ctx context.Context, f InstanceFilter) (InstancePage, error)

	// InstanceClaim leases up to Limit runnable instances: DueAt at or
	// before Now, status not final, lease free or expired. Each claim
	// bumps the epoch.
	InstanceClaim(ctx context.Context, p InstanceClaimParams) ([]Instance, error)
	// InstanceLease leases one instance whatever its DueAt, for commands;
	// ErrLeaseLost when another node holds an unexpired lease and
	// ErrNotFound when there is no such instance.
	InstanceLease(ctx context.Context, id, owner string, ttl time.Duration) (Instance, error)
	// InstanceExtend moves the expiry of a lease its owner still holds to
	// the database clock plus TTL, keeping the epoch, so a long
	// transition is not fenced off midway; ErrLeaseLost when the owner,
	// epoch or expiry no longer match.
	InstanceExtend(ctx context.Context, p InstanceExtendParams) error
	// InstanceNextDue returns the earliest DueAt of unleased, non-final
	// instances; ok is false when there is none.
	InstanceNextDue(ctx context.Context) (due time.Time, ok bool, err error)

	// InstancePurge deletes up to Limit finished instances (completed,
	// failed, cancelled, terminated) that ended before Before, with
	// their steps, audit rows, timers, tasks, deliveries, subscriptions
	// and start keys, in one short write; it returns how many it
	// deleted. Callers purge in batches, calling again while it returns
	// Limit.
	InstancePurge(ctx context.Context, p InstancePurgeParams) (int, error)

	// InstanceLoad reads what a transition needs: the instance, the
	// steps with work (Work set, or a due timer) and all their
	// ancestors, waiting steps, and the due timers. With All it returns
	// every non-final step instead.
	InstanceLoad(ctx context.Context, p InstanceLoadParams) (Loaded, error)

	// TransitionApply writes each transition atomically, checking the
	// lease of each; several share one commit. The result has one error
	// per transition (nil on success, ErrLeaseLost when fenced off,
	// ErrConflict when a step moved on). It sets the instance's DueAt:
	// now when Wake moved since the load, else the earliest timer that
	// may fire (only WhilePaused ones while paused), none when final.
	TransitionApply(ctx context.Context, ts []*Transition) []error

	// StepReport accepts an outcome for a pointer's attempt without a
	// lease: a compare-and-set on attempt and status that stores the
	// report, marks the step as having work, deletes its task row and
	// wakes the instance.
	StepReport(ctx context.Context, p StepReportParams) (ReportResult, error)
	// StepHeartbeat records a heartbeat for the current attempt and
	// moves its heartbeat timer, never past the start-to-close cap.
	StepHeartbeat(ctx context.Context, p StepHeartbeatParams) (ReportResult, error)
	// UserTaskList lists the open user tasks (waiting steps with an
	// assignee) by filter, oldest first, with paging.
	UserTaskList(ctx context.Context, f UserTaskFilter) (UserTaskPage, error)
	// StepList returns every step of an instance ordered by id.
	StepList(ctx context.Context, instanceID string) ([]Step, error)
	// StepChildren returns the finished children of a pointer by slot.
	StepChildren(ctx context.Context, instanceID string, parentID int64) ([]Step, error)

	// TaskClaim hands up to Limit visible tasks of the given services
	// to a worker. The first claim of an attempt marks its step running,
	// writes a step_started audit row and sets its start-to-close and
	// heartbeat timers. A service with a registry entry is held to its
	// Concurrency and Rate limits, cluster-wide; one without an entry has
	// no limits.
	TaskClaim(ctx context.Context, p TaskClaimParams) ([]Task, error)
	// TaskStart starts the step of a task the worker claimed with
	// NoStart, as a first claim would (running, deadline, timers,
	// step_started), when the step has not started yet; it returns the
	// task with its deadline. ErrNotFound when the worker does not hold
	// the task (it was reported, withdrawn or claimed by another).
	TaskStart(ctx context.Context, p TaskStartParams) (Task, error)
	// TaskExtend moves the claim expiry of tasks the worker holds.
	TaskExtend(ctx context.Context, worker string, ids []int64, until time.Time) error
	// TaskRelease gives a claimed task back, visible again at VisibleAt.
	TaskRelease(ctx context.Context, p TaskReleaseParams) error
	// TaskList lists tasks, of one instance when instanceID is set.
	TaskList(ctx context.Context, instanceID string) ([]Task, error)

	// ServicePut validates a registry entry (see Service.Validate) and
	// creates it, or replaces the entry of that name keeping its
	// CreatedAt; UpdatedAt (and CreatedAt of a new entry) become now.
	ServicePut(ctx context.Context, s Service, now time.Time) (Service, error)
	// ServiceGet reads a registry entry; ErrNotFound when there is none.
	ServiceGet(ctx context.Context, name string) (Service, error)
	// ServiceList lists the registry ordered by name.
	ServiceList(ctx context.Context) ([]Service, error)
	// ServiceDelete removes a registry entry; ErrNotFound when there is
	// none, ErrInUse while tasks of the service are queued or held.
	ServiceDelete(ctx context.Context, name string) error

	// TimerList lists an instance's timers by FireAt.
	TimerList(ctx context.Context, instanceID string) ([]Timer, error)

	// EventPublish stores an event and, when its time has come, delivers
	// it to every matching subscription at once.
	EventPublish(ctx context.Context, e Event) (Event, error)
	// EventSweep delivers events whose time has come since they were
	// published; it returns how many it delivered.
	EventSweep(ctx context.Context, now time.Time) (int, error)
	// SubscriptionList lists an instance's subscriptions.
	SubscriptionList(ctx context.Context, instanceID string) ([]Subscription, error)

	// AuditList lists audit rows with Seq above afterSeq, at most limit.
	AuditList(ctx context.Context, instanceID string, afterSeq int64, limit int) ([]AuditEvent, error)
	// AuditAppend writes audit rows after the instance's last seq without
	// a lease and changes nothing else (the API records refused calls with
	// it); ErrNotFound when there is no such instance.
	AuditAppend(ctx context.Context, instanceID string, now time.Time, events ...AuditEvent) error

	// Stats returns the counters.
	Stats() Stats
	// Close releases the database.
	Close() error
}

// FeedReader is implemented by stores that can list the audit rows of
// every instance in commit order, for the lifecycle feed.
type FeedReader interface {
	// AuditFeed lists up to limit audit rows of any instance after feed
	// position after, in commit order. Positions only grow.
	AuditFeed(ctx context.Context, after int64, limit int) ([]FeedEvent, error)
}

// FeedEvent is an audit row with its place in the lifecycle feed.
type FeedEvent struct {
	Position int64
	Event    AuditEvent
}

// InstanceCreateParams holds a new instance and what starts with it.
type InstanceCreateParams struct {
	Instance Instance
	Steps    []Step
	Timers   []Timer
	Audit    []AuditEvent
	// StartKey, with InputHash, makes the start idempotent; KeyTTL is
	// how long the key is remembered.
	StartKey  string
	InputHash string
	KeyTTL    time.Duration
	Now       time.Time
}

// InstanceFilter selects instances for InstanceList.
type InstanceFilter struct {
	Status            []InstanceStatus
	DefinitionName    string
	DefinitionVersion int
	StartKey          string
	CreatedAfter      time.Time
	CreatedBefore     time.Time
	// DataPath and DataValue match instances whose data has the JSON
	// value at the dotted path.
	DataPath  string
	DataValue json.RawMessage
	// PageSize bounds the page (default 100); PageToken continues one.
	PageSize  int
	PageToken string
}

// InstancePage is a page of instances.
type InstancePage struct {
	Instances     []Instance
	NextPageToken string
}

// UserTaskFilter selects open user tasks for UserTaskList; empty fields
// match every task.
type UserTaskFilter struct {
	Assignee   string
	InstanceID string
	// PageSize bounds the page (default 100); PageToken continues one.
	PageSize  int
	PageToken string
}

// UserTaskPage is a page of open user tasks, as their step rows.
type UserTaskPage struct {
	Steps         []Step
	NextPageToken string
}

// InstanceClaimParams says who claims runnable instances, how many and
// for how long.
type InstanceClaimParams struct {
	Owner string
	Limit int
	TTL   time.Duration
	Now   time.Time
}

// InstanceExtendParams names a lease to extend and for how long.
type InstanceExtendParams struct {
	InstanceID string
	Owner      string
	Epoch      int64
	TTL        time.Duration
}

// InstancePurgeParams says which finished instances to delete and how
// many at most in one write.
type InstancePurgeParams struct {
	Before time.Time
	Limit  int
}

// InstanceLoadParams says which instance to load and how much of it.
type InstanceLoadParams struct {
	InstanceID string
	Now        time.Time
	All        bool
}

// Loaded is the active part of an instance.
type Loaded struct {
	Instance Instance
	// Steps are ordered by id.
	Steps []Step
	// Timers are the due timers, ordered by FireAt.
	Timers []Timer
}

// Transition is one atomic change of one instance.
type Transition struct {
	InstanceID string
	// Owner and Epoch fence the write: it applies only while the lease
	// is still this owner's, with this epoch, unexpired by the database
	// clock.
	Owner string
	Epoch int64
	// Wake is the Instance.Wake the engine loaded.
	Wake int64
	// Instance holds the new values of the instance's mutable fields.
	Instance InstanceUpdate
	// Steps are inserted (Rev 0) or replaced whole when their Rev still
	// equals the stored one, else the transition fails with ErrConflict.
	// The store writes Rev+1.
	Steps []Step
	// Audit rows get their Seq from the store, in order.
	Audit []AuditEvent
	// TimersAdd are inserted; TimersDelete remove timers.
	TimersAdd    []Timer
	TimersDelete []TimerKey
	// TasksAdd are inserted; TasksDelete removes the tasks of these
	// pointers (late reports then find nothing to do).
	TasksAdd    []Task
	TasksDelete []int64
	// SubscriptionsAdd are inserted, each matched at once against
	// visible events; SubscriptionsDelete removes those of these
	// pointers.
	SubscriptionsAdd    []Subscription
	SubscriptionsDelete []int64
	// Creates are instances started by this transition (sub-workflow
	// children), written as InstanceCreate writes them; start keys are
	// not used here.
	Creates []InstanceCreateParams
	// Reports go to steps of other instances (a child's end to its
	// parent's step, a parent's cancel to its child) and are applied as
	// StepReport applies them, in the same commit. A report that comes
	// late is audited on its instance, and one to a missing instance or
	// step is dropped; neither fails the transition.
	Reports []StepReportParams
	// KeepLease keeps the lease after the write; otherwise it is freed.
	KeepLease bool
	Now       time.Time
}

// InstanceUpdate is the mutable part of an instance row.
type InstanceUpdate struct {
	Status      InstanceStatus
	Reason      string
	Data        json.RawMessage
	Output      json.RawMessage
	Error       json.RawMessage
	State       json.RawMessage
	NextPointer int64
	EndedAt     time.Time
}

// StepReportParams is an outcome for one attempt.
type StepReportParams struct {
	InstanceID string
	PointerID  int64
	Attempt    int
	// Token must equal the attempt's task token; a report without it, or
	// for a pointer that has none, is late.
	Token  string
	Kind   ReportKind
	Output json.RawMessage
	Error  *StepError
	Now    time.Time
}

// ReportOutcome says what became of a report or heartbeat.
type ReportOutcome string

// Report outcomes.
const (
	// ReportAccepted: stored, the instance will act on it.
	ReportAccepted ReportOutcome = "accepted"
	// ReportDuplicate: the attempt had a report already; Stored holds it.
	ReportDuplicate ReportOutcome = "already_applied"
	// ReportLate: the attempt was superseded, the step or instance is
	// finished, or the token is wrong; audited as late, nothing changed.
	ReportLate ReportOutcome = "late"
)

// ReportResult answers a report or heartbeat.
type ReportResult struct {
	Outcome ReportOutcome
	// Reason explains a late report.
	Reason string
	// Stored is the report already applied, for duplicates.
	Stored *Report
}

// StepHeartbeatParams is a heartbeat for one attempt.
type StepHeartbeatParams struct {
	InstanceID string
	PointerID  int64
	Attempt    int
	Token      string
	Now        time.Time
}

// TaskClaimParams says which tasks a worker takes.
type TaskClaimParams struct {
	Worker   string
	Services []string
	Limit    int
	// LeaseTTL is how long the claim lasts before another worker may
	// take the task again.
	LeaseTTL time.Duration
	Now      time.Time
	// NoStart claims without starting the steps: the claimer (weft's push
	// dispatcher) starts each with TaskStart once its service has the
	// attempt, so that a service that cannot be reached runs down none
	// of the attempt's timeouts.
	NoStart bool
}

// TaskReleaseParams gives a claimed task back.
type TaskReleaseParams struct {
	Worker string
	ID     int64
	// VisibleAt is when the task may be claimed again.
	VisibleAt time.Time
	// Unsent says the claim was not used (the service was not called:
	// its breaker was open, or it answered it is full): it does not
	// count in Claims, and so spends no dispatch try.
	Unsent bool
}

// TaskStartParams starts the step of a task claimed with NoStart.
type TaskStartParams struct {
	Worker string
	ID     int64
	// Now is when the service took the attempt: its start-to-close and
	// heartbeat timers run from then.
	Now time.Time
}
