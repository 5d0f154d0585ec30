package postgres_test

import (
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres/pgtest"
	"github.com/weftworks/weft/store/storetest"
)

func TestConformance(t *testing.T) {
	pgtest.URL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return pgtest.Open(t)
	})
}

func TestNodes(t *testing.T) {
	pgtest.URL(t)
	storetest.Nodes(t, func(t *testing.T) (store.Store, store.Store) {
		url, schema := pgtest.Schema(t)

		return pgtest.OpenSchema(t, url, schema), pgtest.OpenSchema(t, url, schema)
	})
}
