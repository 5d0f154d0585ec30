package postgres_test

import (
	"strings"
	"testing"

	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
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

func TestChannel(t *testing.T) {
	long := strings.Repeat("é", 40)
	tests := []struct{ schema, want string }{
		{"", "weft"},
		{"tenant_a", "weft.tenant_a"},
		{long, "weft." + strings.Repeat("é", 29)},
	}
	for _, tt := range tests {
		if got := postgres.Channel(tt.schema); got != tt.want || len(got) > 63 {
			t.Errorf("Channel(%q) = %q, want %q (at most 63 bytes)", tt.schema, got, tt.want)
		}
	}
}
