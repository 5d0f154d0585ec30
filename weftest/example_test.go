package weftest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/weftest"
)

// A definition with an hour-long schedule is tested by moving the
// kit's clock instead of waiting an hour.
func Example() {
	kit := weftest.New(&testing.T{})
	defer kit.Close()
	// Stubs are Go handlers, which make their services known to the
	// definition registered next.
	kit.Stub("mail", "send", "sent")
	kit.Stub("phone", "call", "called")
	kit.Register([]byte(`
name: follow-up
version: 1
steps:
  - id: later
    type: schedule
    duration: 1h
    steps:
      - {id: call, type: task, service: phone, action: call}
  - {id: now, type: task, service: mail, action: send}
`))

	id := kit.Start("follow-up", `{}`)
	kit.WaitStep(id, "later", store.StepSleeping)
	kit.Advance(time.Hour)
	inst := kit.Wait(id)

	fmt.Println(inst.Status, len(kit.Calls("mail", "send")), len(kit.Calls("phone", "call")))
	// Output:
	// completed 1 1
}
