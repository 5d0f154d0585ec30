package server_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/internal/testca"
	"github.com/weftworks/weft/server"
)

// TestServeUserTasks runs weft serve with bearer tokens over TLS: a
// reader lists a user task but may not answer it (the refusal audited),
// a user-task actor answers it, an unknown option and a second answer
// are refused, and the step's output and audit row name the actor as
// the chooser.
func TestServeUserTasks(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, "weft test CA")
	serverCert, serverKey := ca.Issue(t, "weft", true)
	identities := "identities:\n" +
		"  - {name: admin, roles: [admin, operator, reader], token_sha256: " +
		server.HashToken("admin-token") + "}\n" +
		"  - {name: bob, roles: [reader], token_sha256: " + server.HashToken("reader-token") + "}\n" +
		"  - {name: alice, roles: [user_task], token_sha256: " + server.HashToken("alice-token") + "}\n"
	p := startServeArgs(t,
		"--tls-cert", write(t, dir, "server.pem", serverCert),
		"--tls-key", write(t, dir, "server.key", serverKey),
		"--identities", write(t, dir, "ids.yaml", []byte(identities)))
	ctx := p.ctx(t)

	admin := dialSecure(t, p.addr, ca, nil, nil, "admin-token")
	_, err := admin.defs.RegisterDefinition(ctx, &weftv1.RegisterDefinitionRequest{Source: `
name: refund
version: 1
steps:
  - {id: approve, type: user_task, prompt: "'Refund ' + input.who + '?'", assignee: "'finance'",
     options: [approve, reject], output: decision}
`})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	started, err := admin.exec.StartInstance(ctx, &weftv1.StartInstanceRequest{
		Definition: "refund", Input: `{"who": "carol"}`,
	})
	if err != nil {
		t.Fatalf("starting: %v", err)
	}
	id := started.GetInstance().GetId()

	reader := weftv1.NewUserTaskServiceClient(dialSecure(t, p.addr, ca, nil, nil, "reader-token").conn)
	var task *weftv1.UserTask
	for deadline := time.Now().Add(30 * time.Second); task == nil; {
		list, err := reader.ListUserTasks(ctx, &weftv1.ListUserTasksRequest{Assignee: "finance"})
		if err != nil {
			t.Fatalf("reader listing: %v", err)
		}
		if len(list.GetTasks()) > 0 {
			task = list.GetTasks()[0]
		} else if time.Now().After(deadline) {
			t.Fatal("the user task never opened")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if task.GetInstanceId() != id || task.GetPrompt() != "Refund carol?" ||
		!slices.Equal(task.GetOptions(), []string{"approve", "reject"}) {
		t.Fatalf("task = %v", task)
	}

	answer := &weftv1.CompleteUserTaskRequest{InstanceId: id, Step: "approve", Option: "approve"}
	_, err = reader.CompleteUserTask(ctx, answer)
	wantCode(t, "reader answering", err, codes.PermissionDenied)

	alice := weftv1.NewUserTaskServiceClient(dialSecure(t, p.addr, ca, nil, nil, "alice-token").conn)
	_, err = alice.CompleteUserTask(ctx, &weftv1.CompleteUserTaskRequest{
		InstanceId: id, Step: "approve", Option: "perhaps",
	})
	wantCode(t, "unknown option", err, codes.InvalidArgument)
	if !strings.Contains(status.Convert(err).Message(), "option") {
		t.Errorf("unknown option: %q does not name the field", status.Convert(err).Message())
	}
	if _, err := alice.CompleteUserTask(ctx, answer); err != nil {
		t.Fatalf("alice answering: %v", err)
	}

	inst := waitFinal(t, admin, id)
	var data struct {
		Decision struct{ Option, By string }
	}
	if err := json.Unmarshal([]byte(inst.GetData()), &data); err != nil {
		t.Fatal(err)
	}
	if data.Decision.Option != "approve" || data.Decision.By != "alice" {
		t.Errorf("decision = %+v, want approve by alice", data.Decision)
	}
	_, err = alice.CompleteUserTask(ctx, answer)
	wantCode(t, "second answer", err, codes.FailedPrecondition)

	audit, err := admin.state.ListAuditEvents(ctx, &weftv1.ListAuditEventsRequest{InstanceId: id})
	if err != nil {
		t.Fatal(err)
	}
	var chosen, refused bool
	for _, ev := range audit.GetEvents() {
		switch ev.GetType() {
		case "user_task_completed":
			chosen = chosen || strings.Contains(ev.GetData(), `"alice"`)
		case "request_refused":
			refused = refused || strings.Contains(ev.GetData(), `"bob"`)
		}
	}
	if !chosen {
		t.Errorf("no user_task_completed audit row names alice: %v", audit.GetEvents())
	}
	if !refused {
		t.Errorf("no request_refused audit row names the reader bob: %v", audit.GetEvents())
	}
}

// waitFinal polls an instance until it is final.
func waitFinal(t *testing.T, c *secureClient, id string) *weftv1.Instance {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		got, err := c.state.GetInstance(t.Context(), &weftv1.GetInstanceRequest{InstanceId: id})
		if err != nil {
			t.Fatalf("getting %s: %v", id, err)
		}
		if got.GetInstance().GetStatus() == weftv1.InstanceStatus_INSTANCE_STATUS_COMPLETED {
			return got.GetInstance()
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %v, want completed", id, got.GetInstance().GetStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
