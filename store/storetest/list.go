package storetest

import (
	"testing"

	"github.com/weftworks/weft/store"
)

// List checks InstanceList's filters and paging.
func List(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("PagesNewestFirst", func(t *testing.T) {
		e := newEnv(t, open)
		var ids []string
		for range 25 {
			ids = append(ids, e.create().ID)
		}

		var got []string
		f := store.InstanceFilter{PageSize: 10}
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}

			page, err := e.s.InstanceList(e.ctx, f)
			ok(t, err)
			for _, inst := range page.Instances {
				got = append(got, inst.ID)
			}

			if page.NextPageToken == "" {
				break
			}

			f.PageToken = page.NextPageToken
		}

		equal(t, "count", len(got), 25)
		for i := range got {
			equal(t, "order", got[i], ids[len(ids)-1-i])
		}
	})

	t.Run("SameCreatedAtPagesByID", func(t *testing.T) {
		e := newEnv(t, open)
		for range 5 {
			e.create(func(p *store.InstanceCreateParams) { p.Instance.CreatedAt = e.now })
		}

		first, err := e.s.InstanceList(e.ctx, store.InstanceFilter{PageSize: 3})
		ok(t, err)
		second, err := e.s.InstanceList(e.ctx,
			store.InstanceFilter{PageSize: 3, PageToken: first.NextPageToken})
		ok(t, err)
		equal(t, "sizes", []int{len(first.Instances), len(second.Instances)}, []int{3, 2})
		equal(t, "last page", second.NextPageToken, "")
		equal(t, "descending ids", first.Instances[2].ID > second.Instances[0].ID, true)
	})

	t.Run("BadPageTokenFails", func(t *testing.T) {
		e := newEnv(t, open)
		_, err := e.s.InstanceList(e.ctx, store.InstanceFilter{PageToken: "!!"})
		equal(t, "failed", err != nil, true)
	})

	t.Run("Filters", func(t *testing.T) {
		e := newEnv(t, open)
		a := e.create(func(p *store.InstanceCreateParams) {
			p.Instance.Data = []byte(`{"order": {"id": 7, "tag": "x"}}`)
			p.StartKey, p.InputHash = "k-a", "h"
		})
		b := e.create(func(p *store.InstanceCreateParams) {
			p.Instance.DefinitionVersion = 2
			p.Instance.Status = store.InstancePaused
			p.Instance.Data = []byte(`{"order": {"id": 8, "tag": "x"}}`)
		})
		c := e.create(func(p *store.InstanceCreateParams) { p.Instance.DefinitionName = "other" })

		cases := []struct {
			name string
			f    store.InstanceFilter
			want []string
		}{
			{"all", store.InstanceFilter{}, []string{c.ID, b.ID, a.ID}},
			{"status", store.InstanceFilter{Status: []store.InstanceStatus{store.InstancePaused}},
				[]string{b.ID}},
			{"definition", store.InstanceFilter{DefinitionName: defName}, []string{b.ID, a.ID}},
			{"version", store.InstanceFilter{DefinitionName: defName, DefinitionVersion: 2},
				[]string{b.ID}},
			{"start key", store.InstanceFilter{StartKey: "k-a"}, []string{a.ID}},
			{"created after", store.InstanceFilter{CreatedAfter: a.CreatedAt}, []string{c.ID, b.ID}},
			{"created before", store.InstanceFilter{CreatedBefore: b.CreatedAt}, []string{a.ID}},
			{"data number", store.InstanceFilter{DataPath: "order.id", DataValue: []byte(`7`)},
				[]string{a.ID}},
			{"data string", store.InstanceFilter{DataPath: "order.tag", DataValue: []byte(`"x"`)},
				[]string{b.ID, a.ID}},
			{"data missing", store.InstanceFilter{DataPath: "order.nope", DataValue: []byte(`1`)},
				nil},
		}
		for _, tc := range cases {
			page, err := e.s.InstanceList(e.ctx, tc.f)
			ok(t, err)
			var got []string
			for _, inst := range page.Instances {
				got = append(got, inst.ID)
			}

			equal(t, tc.name, got, tc.want)
		}
	})

	t.Run("PageSizeIsCapped", func(t *testing.T) {
		e := newEnv(t, open)
		e.create()
		page, err := e.s.InstanceList(e.ctx, store.InstanceFilter{PageSize: 1 << 20})
		ok(t, err)
		equal(t, "count", len(page.Instances), 1)
	})
}
