package definition

import (
	_ "embed"
)

// schemaJSON is the JSON Schema of the definition format.
//
//go:embed schema.json
var schemaJSON []byte

// JSONSchema returns a JSON Schema (draft 2020-12) of the definition
// format, for editors to complete and check definitions and for clients
// to show. It checks the shape of a definition; Compile checks the rest.
func JSONSchema() []byte {
	return append([]byte(nil), schemaJSON...)
}
