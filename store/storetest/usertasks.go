package storetest

import (
	"testing"
	"time"

	"github.com/weftworks/weft/store"
)

// UserTasks checks UserTaskList: only waiting steps with an assignee,
// filtered by assignee and instance, oldest first, with paging.
func UserTasks(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("ListsOpenTasks", func(t *testing.T) {
		e := newEnv(t, open)
		step := func(id int64, status store.StepStatus, assignee string) store.Step {
			return store.Step{
				ID: id, StepID: "ask", ParentID: rootID, Status: status, Assignee: assignee,
				Input: []byte(`{"prompt": "go?"}`), CreatedAt: e.at(time.Duration(id) * time.Second),
			}
		}
		a := e.create(func(p *store.InstanceCreateParams) {
			p.Steps = append(p.Steps, step(2, store.StepWaiting, "alice"),
				step(3, store.StepWaiting, ""), step(4, store.StepCompleted, "alice"),
				step(5, store.StepWaiting, "bob"))
			p.Instance.NextPointer = 6
		})
		b := e.create(func(p *store.InstanceCreateParams) {
			p.Steps = append(p.Steps, step(2, store.StepWaiting, "alice"))
			p.Instance.NextPointer = 3
		})

		list := func(f store.UserTaskFilter) []string {
			page, err := e.s.UserTaskList(e.ctx, f)
			ok(t, err)
			var got []string
			for _, st := range page.Steps {
				got = append(got, st.InstanceID+"/"+st.Assignee+"/"+string(st.Input))
			}
			return got
		}
		in := `/{"prompt": "go?"}`
		equal(t, "all", list(store.UserTaskFilter{}),
			[]string{a.ID + "/alice" + in, b.ID + "/alice" + in, a.ID + "/bob" + in})
		equal(t, "alice", list(store.UserTaskFilter{Assignee: "alice"}),
			[]string{a.ID + "/alice" + in, b.ID + "/alice" + in})
		equal(t, "instance", list(store.UserTaskFilter{InstanceID: a.ID}),
			[]string{a.ID + "/alice" + in, a.ID + "/bob" + in})
		equal(t, "nobody", len(list(store.UserTaskFilter{Assignee: "carol"})), 0)
	})

	t.Run("Pages", func(t *testing.T) {
		e := newEnv(t, open)
		var want []string
		for range 7 {
			inst := e.create(func(p *store.InstanceCreateParams) {
				p.Steps = append(p.Steps, store.Step{
					ID: 2, StepID: "ask", ParentID: rootID, Status: store.StepWaiting,
					Assignee: "ops", CreatedAt: e.now,
				})
				p.Instance.NextPointer = 3
			})
			want = append(want, inst.ID)
		}

		var got []string
		f := store.UserTaskFilter{Assignee: "ops", PageSize: 3}
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			page, err := e.s.UserTaskList(e.ctx, f)
			ok(t, err)
			for _, st := range page.Steps {
				got = append(got, st.InstanceID)
			}
			if page.NextPageToken == "" {
				break
			}
			f.PageToken = page.NextPageToken
		}
		equal(t, "instances", got, want)

		_, err := e.s.UserTaskList(e.ctx, store.UserTaskFilter{PageToken: "!!"})
		equal(t, "bad token fails", err != nil, true)
	})
}
