package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// badCase is one bad request and the answer it must get: the code, and a
// field that the message names.
type badCase struct {
	name  string
	req   proto.Message
	code  codes.Code
	field string
}

const payloadLimit = 1 << 20

var (
	tooLarge = `"` + strings.Repeat("x", payloadLimit) + `"`
	longName = strings.Repeat("n", 2000)
	unknown  = "01900000-0000-7000-8000-000000000000"
)

func invalid(name string, req proto.Message, field string) badCase {
	return badCase{name: name, req: req, code: codes.InvalidArgument, field: field}
}

func precondition(name string, req proto.Message, field string) badCase {
	return badCase{name: name, req: req, code: codes.FailedPrecondition, field: field}
}

// registryCase is a RegisterService request of a push service changed
// by mod.
func registryCase(mod func(*weftv1.Service)) *weftv1.RegisterServiceRequest {
	svc := &weftv1.Service{
		Name: "fresh", Mode: weftv1.ServiceMode_SERVICE_MODE_PUSH, Addresses: []string{"h:1"},
	}
	mod(svc)

	return &weftv1.RegisterServiceRequest{Service: svc}
}

func notFound(name string, req proto.Message, field string) badCase {
	return badCase{name: name, req: req, code: codes.NotFound, field: field}
}

// badCases lists the bad requests of every RPC, by full method name; id
// is a running instance of the definition "known" v1.
func badCases(id string) map[string][]badCase {
	ref := func(mod func(*weftv1.TaskRef)) *weftv1.TaskRef {
		r := &weftv1.TaskRef{InstanceId: id, PointerId: 2, Attempt: 1, TaskToken: "token"}
		if mod != nil {
			mod(r)
		}
		return r
	}
	unknownRef := ref(func(r *weftv1.TaskRef) { r.InstanceId = unknown })

	return map[string][]badCase{
		"/weft.v1.WorkflowDefinitionService/RegisterDefinition": {
			invalid("missing source", &weftv1.RegisterDefinitionRequest{}, "source"),
			invalid("malformed JSON", &weftv1.RegisterDefinitionRequest{Source: `{"name": "x",`}, "source"),
			invalid("malformed YAML", &weftv1.RegisterDefinitionRequest{Source: "name: [x"}, "source"),
			invalid("oversized", &weftv1.RegisterDefinitionRequest{Source: tooLarge}, "source"),
			invalid("unknown kind", &weftv1.RegisterDefinitionRequest{
				Source: "name: x\nversion: 1\nsteps:\n  - {id: a, type: teleport}\n"}, "source"),
			invalid("unknown service", &weftv1.RegisterDefinitionRequest{
				Source: "name: x\nversion: 1\nsteps:\n  - {id: a, type: task, service: ghost, " +
					"action: x}\n"}, "steps[0].service"),
		},
		"/weft.v1.WorkflowDefinitionService/ValidateDefinition": {
			invalid("missing source", &weftv1.ValidateDefinitionRequest{}, "source"),
			invalid("oversized", &weftv1.ValidateDefinitionRequest{Source: tooLarge}, "source"),
		},
		"/weft.v1.WorkflowDefinitionService/GetDefinition": {
			invalid("missing name", &weftv1.GetDefinitionRequest{}, "name"),
			invalid("negative version", &weftv1.GetDefinitionRequest{Name: "known", Version: -1}, "version"),
			notFound("unknown name", &weftv1.GetDefinitionRequest{Name: "nope"}, "name"),
			notFound("unknown version", &weftv1.GetDefinitionRequest{Name: "known", Version: 9}, "name"),
		},
		"/weft.v1.WorkflowDefinitionService/ListDefinitions": {
			invalid("oversized name", &weftv1.ListDefinitionsRequest{Name: longName}, "name"),
		},
		"/weft.v1.WorkflowDefinitionService/DeprecateDefinition": {
			invalid("missing name", &weftv1.DeprecateDefinitionRequest{Version: 1}, "name"),
			invalid("missing version", &weftv1.DeprecateDefinitionRequest{Name: "known"}, "version"),
			notFound("unknown name", &weftv1.DeprecateDefinitionRequest{Name: "nope", Version: 1}, "name"),
		},
		"/weft.v1.WorkflowDefinitionService/DeleteDefinition": {
			invalid("missing name", &weftv1.DeleteDefinitionRequest{Version: 1}, "name"),
			invalid("missing version", &weftv1.DeleteDefinitionRequest{Name: "known"}, "version"),
			notFound("unknown name", &weftv1.DeleteDefinitionRequest{Name: "nope", Version: 1}, "name"),
		},
		"/weft.v1.WorkflowExecutionService/StartInstance": {
			invalid("missing definition", &weftv1.StartInstanceRequest{}, "definition"),
			invalid("negative version", &weftv1.StartInstanceRequest{Definition: "known", Version: -1}, "version"),
			invalid("malformed input", &weftv1.StartInstanceRequest{Definition: "known", Input: `{"a":`}, "input"),
			invalid("input not an object", &weftv1.StartInstanceRequest{Definition: "known", Input: `[1]`}, "input"),
			invalid("oversized input", &weftv1.StartInstanceRequest{Definition: "known", Input: tooLarge}, "input"),
			invalid("oversized start key", &weftv1.StartInstanceRequest{Definition: "known", StartKey: longName},
				"start_key"),
			notFound("unknown definition", &weftv1.StartInstanceRequest{Definition: "nope"}, "definition"),
			notFound("unknown version", &weftv1.StartInstanceRequest{Definition: "known", Version: 9}, "definition"),
		},
		"/weft.v1.WorkflowExecutionService/PauseInstance": commandCases(func(id, reason string) proto.Message {
			return &weftv1.PauseInstanceRequest{InstanceId: id, Reason: reason}
		}, true),
		"/weft.v1.WorkflowExecutionService/ResumeInstance": commandCases(func(id, _ string) proto.Message {
			return &weftv1.ResumeInstanceRequest{InstanceId: id}
		}, false),
		"/weft.v1.WorkflowExecutionService/CancelInstance": commandCases(func(id, reason string) proto.Message {
			return &weftv1.CancelInstanceRequest{InstanceId: id, Reason: reason}
		}, true),
		"/weft.v1.WorkflowExecutionService/TerminateInstance": commandCases(func(id, reason string) proto.Message {
			return &weftv1.TerminateInstanceRequest{InstanceId: id, Reason: reason}
		}, true),
		"/weft.v1.WorkflowExecutionService/RetryInstance": commandCases(func(id, _ string) proto.Message {
			return &weftv1.RetryInstanceRequest{InstanceId: id}
		}, false),
		"/weft.v1.WorkflowExecutionService/SkipStep": {
			invalid("missing instance", &weftv1.SkipStepRequest{StepId: "a"}, "instance_id"),
			invalid("missing step", &weftv1.SkipStepRequest{InstanceId: id}, "step_id"),
			invalid("malformed output", &weftv1.SkipStepRequest{InstanceId: id, StepId: "a", Output: "{"}, "output"),
			invalid("oversized output", &weftv1.SkipStepRequest{InstanceId: id, StepId: "a", Output: tooLarge},
				"output"),
			notFound("unknown instance", &weftv1.SkipStepRequest{InstanceId: unknown, StepId: "a"}, "instance_id"),
		},
		"/weft.v1.WorkflowExecutionService/PublishEvent": {
			invalid("missing name", &weftv1.PublishEventRequest{Key: "k"}, "name"),
			invalid("malformed data", &weftv1.PublishEventRequest{Name: "e", Data: "{"}, "data"),
			invalid("oversized data", &weftv1.PublishEventRequest{Name: "e", Data: tooLarge}, "data"),
			invalid("oversized key", &weftv1.PublishEventRequest{Name: "e", Key: longName}, "key"),
			notFound("unknown instance", &weftv1.PublishEventRequest{Name: "e", InstanceId: unknown}, "instance_id"),
		},
		"/weft.v1.WorkflowStateService/GetInstance": {
			invalid("missing instance", &weftv1.GetInstanceRequest{}, "instance_id"),
			notFound("unknown instance", &weftv1.GetInstanceRequest{InstanceId: unknown}, "instance_id"),
		},
		"/weft.v1.WorkflowStateService/ListInstances": {
			invalid("unspecified status", &weftv1.ListInstancesRequest{
				Statuses: []weftv1.InstanceStatus{weftv1.InstanceStatus_INSTANCE_STATUS_UNSPECIFIED}}, "statuses[0]"),
			invalid("page size too big", &weftv1.ListInstancesRequest{PageSize: 5000}, "page_size"),
			invalid("negative page size", &weftv1.ListInstancesRequest{PageSize: -1}, "page_size"),
			invalid("made-up page token", &weftv1.ListInstancesRequest{PageToken: "garbage"}, "page_token"),
			invalid("version without definition", &weftv1.ListInstancesRequest{Version: 1}, "version"),
			invalid("bad data path", &weftv1.ListInstancesRequest{DataPath: "a..b", DataValue: "1"}, "data_path"),
			invalid("malformed data value", &weftv1.ListInstancesRequest{DataPath: "a", DataValue: "{"},
				"data_value"),
			invalid("data path without value", &weftv1.ListInstancesRequest{DataPath: "a"}, "data_value"),
			invalid("data value without path", &weftv1.ListInstancesRequest{DataValue: "1"}, "data_path"),
		},
		"/weft.v1.WorkflowStateService/ListAuditEvents": {
			invalid("missing instance", &weftv1.ListAuditEventsRequest{}, "instance_id"),
			invalid("negative seq", &weftv1.ListAuditEventsRequest{InstanceId: id, AfterSeq: -1}, "after_seq"),
			invalid("limit too big", &weftv1.ListAuditEventsRequest{InstanceId: id, Limit: 100000}, "limit"),
			notFound("unknown instance", &weftv1.ListAuditEventsRequest{InstanceId: unknown}, "instance_id"),
		},
		"/weft.v1.WorkflowStateService/ListTasks": {
			invalid("oversized service", &weftv1.ListTasksRequest{Service: longName}, "service"),
			notFound("unknown instance", &weftv1.ListTasksRequest{InstanceId: unknown}, "instance_id"),
		},
		"/weft.v1.WorkflowStateService/WatchInstance": {
			invalid("missing instance", &weftv1.WatchInstanceRequest{}, "instance_id"),
			invalid("negative seq", &weftv1.WatchInstanceRequest{InstanceId: id, AfterSeq: -1}, "after_seq"),
			invalid("future seq", &weftv1.WatchInstanceRequest{InstanceId: id, AfterSeq: 1 << 40}, "after_seq"),
			notFound("unknown instance", &weftv1.WatchInstanceRequest{InstanceId: unknown}, "instance_id"),
		},
		"/weft.v1.WorkflowStateService/WatchLifecycle": {
			invalid("negative position", &weftv1.WatchLifecycleRequest{AfterPosition: -1}, "after_position"),
		},
		"/weft.v1.StepExecutionService/PollTasks": {
			invalid("missing service", &weftv1.PollTasksRequest{Worker: "w"}, "service"),
			invalid("missing worker", &weftv1.PollTasksRequest{Service: "s"}, "worker"),
			invalid("too many tasks", &weftv1.PollTasksRequest{Service: "s", Worker: "w", MaxTasks: 1000},
				"max_tasks"),
			invalid("wait too long", &weftv1.PollTasksRequest{Service: "s", Worker: "w",
				Wait: durationpb.New(time.Hour)}, "wait"),
			precondition("push service", &weftv1.PollTasksRequest{Service: "pushed", Worker: "w"},
				"push mode"),
			precondition("unregistered service", &weftv1.PollTasksRequest{Service: "nosuch", Worker: "w"},
				"not registered"),
		},
		"/weft.v1.StepExecutionService/CompleteTask": {
			invalid("missing task", &weftv1.CompleteTaskRequest{Output: "1"}, "task"),
			invalid("missing token", &weftv1.CompleteTaskRequest{
				Task: ref(func(r *weftv1.TaskRef) { r.TaskToken = "" })}, "task.task_token"),
			invalid("zero pointer", &weftv1.CompleteTaskRequest{
				Task: ref(func(r *weftv1.TaskRef) { r.PointerId = 0 })}, "task.pointer_id"),
			invalid("zero attempt", &weftv1.CompleteTaskRequest{
				Task: ref(func(r *weftv1.TaskRef) { r.Attempt = 0 })}, "task.attempt"),
			invalid("malformed output", &weftv1.CompleteTaskRequest{Task: ref(nil), Output: "{"}, "output"),
			notFound("unknown instance", &weftv1.CompleteTaskRequest{Task: unknownRef}, "task"),
			notFound("unknown pointer", &weftv1.CompleteTaskRequest{
				Task: ref(func(r *weftv1.TaskRef) { r.PointerId = 999 })}, "task"),
			notFound("oversized output of an unknown instance", &weftv1.CompleteTaskRequest{
				Task: unknownRef, Output: tooLarge}, "task"),
		},
		"/weft.v1.StepExecutionService/FailTask": {
			invalid("missing task", &weftv1.FailTaskRequest{Error: &weftv1.StepError{Message: "m"}}, "task"),
			invalid("missing error", &weftv1.FailTaskRequest{Task: ref(nil)}, "error"),
			invalid("missing message", &weftv1.FailTaskRequest{Task: ref(nil), Error: &weftv1.StepError{Code: "c"}},
				"error.message"),
			invalid("oversized message", &weftv1.FailTaskRequest{Task: ref(nil),
				Error: &weftv1.StepError{Message: tooLarge}}, "error.message"),
			notFound("unknown instance", &weftv1.FailTaskRequest{Task: unknownRef,
				Error: &weftv1.StepError{Message: "m"}}, "task"),
		},
		"/weft.v1.StepExecutionService/HeartbeatTask": {
			invalid("missing task", &weftv1.HeartbeatTaskRequest{}, "task"),
			invalid("task id without worker", &weftv1.HeartbeatTaskRequest{Task: ref(nil), TaskId: 1}, "worker"),
			notFound("unknown instance", &weftv1.HeartbeatTaskRequest{Task: unknownRef}, "task"),
		},
		"/weft.v1.ServiceRegistryService/RegisterService": {
			invalid("missing service", &weftv1.RegisterServiceRequest{}, "service"),
			invalid("missing name", registryCase(func(s *weftv1.Service) { s.Name = "" }),
				"service.name"),
			invalid("bad name", registryCase(func(s *weftv1.Service) { s.Name = "a b" }),
				"service.name"),
			invalid("oversized name", registryCase(func(s *weftv1.Service) { s.Name = longName }),
				"service.name"),
			invalid("missing mode", registryCase(func(s *weftv1.Service) { s.Mode = 0 }),
				"service.mode"),
			invalid("unknown mode", registryCase(func(s *weftv1.Service) { s.Mode = 9 }),
				"service.mode"),
			invalid("push without address", registryCase(func(s *weftv1.Service) {
				s.Addresses = nil
			}), "service.addresses"),
			invalid("pull with address", registryCase(func(s *weftv1.Service) {
				s.Mode = weftv1.ServiceMode_SERVICE_MODE_PULL
			}), "service.addresses"),
			invalid("address without port", registryCase(func(s *weftv1.Service) {
				s.Addresses = []string{"h:1", "h"}
			}), "service.addresses[1]"),
			invalid("negative concurrency", registryCase(func(s *weftv1.Service) {
				s.Concurrency = -1
			}), "service.concurrency"),
			invalid("negative rate", registryCase(func(s *weftv1.Service) { s.Rate = -1 }),
				"service.rate"),
			invalid("negative burst", registryCase(func(s *weftv1.Service) { s.Burst = -1 }),
				"service.burst"),
			invalid("negative dispatch timeout", registryCase(func(s *weftv1.Service) {
				s.DispatchTimeout = durationpb.New(-time.Second)
			}), "service.dispatch_timeout"),
			invalid("negative dispatch limit", registryCase(func(s *weftv1.Service) {
				s.DispatchLimit = -1
			}), "service.dispatch_limit"),
			invalid("certificate without key", registryCase(func(s *weftv1.Service) {
				s.Tls = &weftv1.ServiceTLS{Enabled: true, CertFile: "c.pem"}
			}), "service.tls.key_file"),
		},
		"/weft.v1.ServiceRegistryService/GetService": {
			invalid("missing name", &weftv1.GetServiceRequest{}, "name"),
			notFound("unknown name", &weftv1.GetServiceRequest{Name: "ghost"}, "name"),
		},
		// ListServices takes no field, so no request of it is bad.
		"/weft.v1.ServiceRegistryService/ListServices": {},
		"/weft.v1.ServiceRegistryService/DeleteService": {
			invalid("missing name", &weftv1.DeleteServiceRequest{}, "name"),
			notFound("unknown name", &weftv1.DeleteServiceRequest{Name: "ghost"}, "name"),
			precondition("tasks queued", &weftv1.DeleteServiceRequest{Name: "nobody"}, "in use"),
		},
		"/weft.v1.UserTaskService/ListUserTasks": {
			invalid("negative page size", &weftv1.ListUserTasksRequest{PageSize: -1}, "page_size"),
			invalid("page size over the cap", &weftv1.ListUserTasksRequest{PageSize: 5000}, "page_size"),
			invalid("bad page token", &weftv1.ListUserTasksRequest{PageToken: "!!"}, "page_token"),
			invalid("oversized assignee", &weftv1.ListUserTasksRequest{Assignee: longName}, "assignee"),
		},
		"/weft.v1.UserTaskService/CompleteUserTask": {
			invalid("missing instance", &weftv1.CompleteUserTaskRequest{Step: "a", Option: "x"},
				"instance_id"),
			invalid("missing step", &weftv1.CompleteUserTaskRequest{InstanceId: id, Option: "x"},
				"step"),
			invalid("missing option", &weftv1.CompleteUserTaskRequest{InstanceId: id, Step: "a"},
				"option"),
			invalid("oversized step", &weftv1.CompleteUserTaskRequest{InstanceId: id,
				Step: longName, Option: "x"}, "step"),
			notFound("unknown instance", &weftv1.CompleteUserTaskRequest{InstanceId: unknown,
				Step: "a", Option: "x"}, "instance_id"),
		},
	}
}

// commandCases are the cases of an instance command.
func commandCases(req func(id, reason string) proto.Message, reason bool) []badCase {
	cases := []badCase{
		invalid("missing instance", req("", ""), "instance_id"),
		notFound("unknown instance", req(unknown, ""), "instance_id"),
	}
	if reason {
		cases = append(cases, invalid("oversized reason", req(unknown, longName), "reason"))
	}

	return cases
}

// TestServeBadRequests walks the descriptors of the services weft serves:
// every RPC must have bad-request cases, and each must be answered
// INVALID_ARGUMENT or NOT_FOUND naming the field, and change nothing.
func TestServeBadRequests(t *testing.T) {
	p := startServe(t)
	p.register(t, "name: known\nversion: 1\nsteps:\n  - {id: a, type: task, service: nobody, action: x}\n")
	id := p.start(t, "known", `{}`)
	_, err := p.registry.RegisterService(p.ctx(t), &weftv1.RegisterServiceRequest{
		Service: &weftv1.Service{
			Name: "pushed", Mode: weftv1.ServiceMode_SERVICE_MODE_PUSH,
			Addresses: []string{"127.0.0.1:1"},
		},
	})
	if err != nil {
		t.Fatalf("registering a push service: %v", err)
	}
	cases := badCases(id)

	for _, sd := range servedServices(t) {
		for i := 0; i < sd.Methods().Len(); i++ {
			md := sd.Methods().Get(i)
			method := "/" + string(sd.FullName()) + "/" + string(md.Name())
			list, ok := cases[method]
			if !ok || len(list) == 0 && md.Input().Fields().Len() > 0 {
				t.Errorf("%s has no bad-request cases", method)
				continue
			}
			delete(cases, method)
			for _, c := range list {
				t.Run(string(md.Name())+"/"+c.name, func(t *testing.T) {
					checkBadCall(t, p, md, method, c)
				})
			}
		}
	}
	for method := range cases {
		t.Errorf("cases for %s, which no served service has", method)
	}

	defs, err := p.defs.ListDefinitions(p.ctx(t), &weftv1.ListDefinitionsRequest{})
	if err != nil || len(defs.GetDefinitions()) != 1 || defs.GetDefinitions()[0].GetStatus() !=
		weftv1.DefinitionStatus_DEFINITION_STATUS_ACTIVE {
		t.Fatalf("definitions after the bad requests = %v, %v; want known v1, active", defs, err)
	}
	services, err := p.registry.ListServices(p.ctx(t), &weftv1.ListServicesRequest{})
	if err != nil || len(services.GetServices()) != len(testServices)+1 {
		t.Fatalf("services after the bad requests = %v, %v; want %d", services, err,
			len(testServices)+1)
	}
	insts, err := p.state.ListInstances(p.ctx(t), &weftv1.ListInstancesRequest{})
	if err != nil || len(insts.GetInstances()) != 1 ||
		insts.GetInstances()[0].GetStatus() != weftv1.InstanceStatus_INSTANCE_STATUS_RUNNING {
		t.Fatalf("instances after the bad requests = %v, %v; want one, running", insts, err)
	}
}

// servedServices are the weft.v1 services weft serves: every one in the
// protos except StepWorkerService, which services implement and weft
// calls.
func servedServices(t *testing.T) []protoreflect.ServiceDescriptor {
	var out []protoreflect.ServiceDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("weft.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			if sd.Name() != "StepWorkerService" {
				out = append(out, sd)
			}
		}
		return true
	})
	if len(out) != 6 {
		t.Fatalf("found %d served services, want 6", len(out))
	}

	return out
}

func checkBadCall(t *testing.T, p *serveProc, md protoreflect.MethodDescriptor, method string, c badCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	err := invoke(ctx, p.conn, md, method, c.req)
	st, _ := status.FromError(err)
	if st.Code() != c.code {
		t.Fatalf("%s: code %v (%q), want %v", method, st.Code(), st.Message(), c.code)
	}
	if !strings.Contains(st.Message(), c.field) {
		t.Fatalf("%s: message %q does not name the field %q", method, st.Message(), c.field)
	}
}

// invoke calls any method, unary or server streaming, and returns its
// error; a stream's first message must not come.
func invoke(ctx context.Context, conn *grpc.ClientConn, md protoreflect.MethodDescriptor, method string,
	req proto.Message) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return err
	}
	resp := mt.New().Interface()

	if !md.IsStreamingServer() {
		return conn.Invoke(ctx, method, req, resp)
	}

	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}

	return stream.RecvMsg(resp)
}
