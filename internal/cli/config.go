package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// envPrefix starts the environment variable of every serve flag:
// --max-payload-bytes is WEFT_MAX_PAYLOAD_BYTES.
const envPrefix = "WEFT_"

// envName is the environment variable that sets a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyConfig fills the flags the command line did not set: from the
// environment first, then from the YAML config file when path is set.
// The file maps flag names to values, as in "listen: 127.0.0.1:7233".
func applyConfig(flags *pflag.FlagSet, path string) error {
	file := map[string]any{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config file: %w", err)
		}
		if err := yaml.Unmarshal(raw, &file); err != nil {
			return fmt.Errorf("reading config file %s: %w", path, err)
		}
		for key := range file {
			if f := flags.Lookup(key); f == nil || key == "config" {
				return fmt.Errorf("config file %s: unknown setting %q", path, key)
			}
		}
	}

	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("environment %s: %w", envName(f.Name), serr)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if serr := f.Value.Set(fmt.Sprint(v)); serr != nil {
				err = fmt.Errorf("config file %s: %s: %w", path, f.Name, serr)
			}
		}
	})

	return err
}
