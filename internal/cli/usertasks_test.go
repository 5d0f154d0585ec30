package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLIUserTasks lists an open user task by assignee, refuses an
// unknown option with a message naming it, answers the task and reads
// the answer in the instance's data.
func TestCLIUserTasks(t *testing.T) {
	addr := testServer(t, nil)
	def := writeFile(t, "refund.yaml", `
name: refund
version: 1
steps:
  - {id: approve, type: user_task, prompt: "'Refund ' + input.who + '?'", assignee: "'finance'",
     options: [approve, reject], output: decision}
`)
	mustWeft(t, addr, "definition", "register", def)
	var inst struct{ Instance struct{ ID string } }
	started := mustWeft(t, addr, "start", "refund", "--input", `{"who": "carol"}`, "-o", "json")
	if err := json.Unmarshal([]byte(started), &inst); err != nil {
		t.Fatal(err)
	}
	id := inst.Instance.ID

	var out string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out, id); {
		if time.Now().After(deadline) {
			t.Fatalf("usertask list never showed %s:\n%s", id, out)
		}
		out = mustWeft(t, addr, "usertask", "list", "--assignee", "finance")
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"approve,reject", "Refund carol?", "finance"} {
		if !strings.Contains(out, want) {
			t.Errorf("usertask list printed\n%s\nwithout %q", out, want)
		}
	}
	if other := mustWeft(t, addr, "usertask", "list", "--assignee", "legal"); strings.Contains(other, id) {
		t.Errorf("usertask list --assignee legal shows the finance task:\n%s", other)
	}

	_, errOut, code := weft(t, addr, "usertask", "complete", id, "approve", "perhaps")
	if code == 0 || !strings.Contains(errOut, "option") {
		t.Errorf("unknown option: exit %d, stderr %q; want non-zero naming option", code, errOut)
	}
	mustWeft(t, addr, "usertask", "complete", id, "approve", "approve")

	var got string
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(got, "completed"); {
		if time.Now().After(deadline) {
			t.Fatalf("instance did not complete:\n%s", got)
		}
		got = mustWeft(t, addr, "instance", "get", id)
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(got, `"option":"approve"`) || !strings.Contains(got, `"by":"anonymous"`) {
		t.Errorf("instance get printed\n%s\nwithout the decision by anonymous", got)
	}
	if left := mustWeft(t, addr, "usertask", "list", "-o", "json"); strings.Contains(left, id) {
		t.Errorf("the answered task is still listed:\n%s", left)
	}
}
