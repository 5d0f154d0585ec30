package storetest

import (
	"testing"

	"github.com/weftworks/weft/store"
)

// Definitions checks registering, reading, deprecating and deleting
// definition versions.
func Definitions(t *testing.T, open func(*testing.T) store.Store) {
	source := []byte(`{"name": "order",  "big": 123456789012345678901234567890, "f": 1.50}`)
	def := func(name string, version int) store.Definition {
		return store.Definition{Name: name, Version: version, Source: source}
	}

	t.Run("CreateGetKeepsSourceBytes", func(t *testing.T) {
		e := newEnv(t, open)
		ok(t, e.s.DefinitionCreate(e.ctx, def("order", 1)))

		got, err := e.s.DefinitionGet(e.ctx, "order", 1)
		ok(t, err)
		equal(t, "source", string(got.Source), string(source))
		equal(t, "status", got.Status, store.DefinitionActive)
		equal(t, "created at set", got.CreatedAt.IsZero(), false)
	})

	t.Run("DuplicateVersionIsAlreadyExists", func(t *testing.T) {
		e := newEnv(t, open)
		ok(t, e.s.DefinitionCreate(e.ctx, def("order", 1)))
		isErr(t, e.s.DefinitionCreate(e.ctx, def("order", 1)), store.ErrAlreadyExists)
	})

	t.Run("VersionZeroIsNewest", func(t *testing.T) {
		e := newEnv(t, open)
		for _, v := range []int{1, 3, 2} {
			ok(t, e.s.DefinitionCreate(e.ctx, def("order", v)))
		}

		ok(t, e.s.DefinitionSetStatus(e.ctx, "order", 3, store.DefinitionDeprecated))
		got, err := e.s.DefinitionGet(e.ctx, "order", 0)
		ok(t, err)
		equal(t, "version", got.Version, 3)
		equal(t, "status", got.Status, store.DefinitionDeprecated)
	})

	t.Run("MissingIsNotFound", func(t *testing.T) {
		e := newEnv(t, open)
		_, err := e.s.DefinitionGet(e.ctx, "order", 1)
		isErr(t, err, store.ErrNotFound)
		_, err = e.s.DefinitionGet(e.ctx, "order", 0)
		isErr(t, err, store.ErrNotFound)
		isErr(t, e.s.DefinitionSetStatus(e.ctx, "order", 1, store.DefinitionDeprecated),
			store.ErrNotFound)
		isErr(t, e.s.DefinitionDelete(e.ctx, "order", 1), store.ErrNotFound)
	})

	t.Run("ListOrdersByNameThenVersion", func(t *testing.T) {
		e := newEnv(t, open)
		for _, d := range []store.Definition{def("b", 2), def("a", 1), def("b", 1)} {
			ok(t, e.s.DefinitionCreate(e.ctx, d))
		}

		all, err := e.s.DefinitionList(e.ctx, "")
		ok(t, err)
		var keys []string
		for _, d := range all {
			keys = append(keys, d.Name+string(rune('0'+d.Version)))
		}

		equal(t, "all", keys, []string{"a1", "b1", "b2"})
		some, err := e.s.DefinitionList(e.ctx, "b")
		ok(t, err)
		equal(t, "of b", len(some), 2)
	})

	t.Run("DeleteRefusedWhileInUse", func(t *testing.T) {
		e := newEnv(t, open)
		ok(t, e.s.DefinitionCreate(e.ctx, def(defName, 1)))
		ok(t, e.s.DefinitionCreate(e.ctx, def(defName, 2)))
		e.create()

		isErr(t, e.s.DefinitionDelete(e.ctx, defName, 1), store.ErrInUse)
		ok(t, e.s.DefinitionDelete(e.ctx, defName, 2))
		_, err := e.s.DefinitionGet(e.ctx, defName, 2)
		isErr(t, err, store.ErrNotFound)
	})

	t.Run("DeleteRefusedWhileFinishedInstancesAreStored", func(t *testing.T) {
		e := newEnv(t, open)
		ok(t, e.s.DefinitionCreate(e.ctx, def(defName, 1)))
		for _, s := range []store.InstanceStatus{store.InstanceCompleted,
			store.InstanceCancelled, store.InstanceTerminated, store.InstanceFailed} {
			e.create(func(p *store.InstanceCreateParams) { p.Instance.Status = s })
		}

		isErr(t, e.s.DefinitionDelete(e.ctx, defName, 1), store.ErrInUse)
		_, err := e.s.DefinitionGet(e.ctx, defName, 1)
		ok(t, err)
	})
}
