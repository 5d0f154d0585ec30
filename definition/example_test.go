package definition_test

import (
	"fmt"

	"github.com/weftworks/weft/definition"
)

func ExampleCompile() {
	src := []byte(`
name: resize
version: 1
steps:
  - id: fetch
    type: task
    service: storage
    action: download
    output: original
  - id: thumb
    type: task
    service: imaging
    action: resize
    input: {image: data.original.key, width: 128}
`)
	d, err := definition.Parse(src)
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := definition.Compile(d)
	if err != nil {
		fmt.Println(err)
		return
	}

	for _, n := range g.Root.Block(definition.BlockSteps) {
		fmt.Println(n.Path, n.ID, n.Service, n.Retry.MaxAttempts)
	}
	// Output:
	// steps[0] fetch storage 3
	// steps[1] thumb imaging 3
}

func ExampleValidationError() {
	src := []byte(`
name: resize
version: 1
steps:
  - id: fetch
    type: task
    service: storage
  - id: fan
    type: parallel
    branches:
      - steps:
          - {id: fetch, type: delay, duration: 1s}
`)
	d, err := definition.Parse(src)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = definition.Compile(d)
	fmt.Println(err)
	// Output:
	// steps[0].action: required for a task step
	// steps[1].branches[0].steps[0].id: duplicate id "fetch" (first at steps[0].id)
}
