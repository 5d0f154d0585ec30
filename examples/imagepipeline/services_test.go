package imagepipeline_test

import (
	"strings"
	"testing"

	"github.com/weftworks/weft/examples/imagepipeline"
	"github.com/weftworks/weft/worker"
)

func TestHandleServiceRefusesUnknownService(t *testing.T) {
	w, err := worker.New(worker.Options{Address: "127.0.0.1:1", Service: "resize", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	for _, name := range imagepipeline.Services {
		if err := imagepipeline.HandleService(w, name); err != nil {
			t.Errorf("HandleService(%s): %v", name, err)
		}
	}
	err = imagepipeline.HandleService(w, "resize")
	if err == nil || !strings.Contains(err.Error(), `"resize"`) {
		t.Fatalf("HandleService(resize) = %v, want an error naming it", err)
	}
}
