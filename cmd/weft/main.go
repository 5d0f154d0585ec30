// Command weft is the weft workflow orchestrator: it runs the engine and
// talks to it.
package main

import (
	"os"

	"github.com/weftworks/weft/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
