package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/weftworks/weft/store"
)

// envPrefix starts the environment variable of every serve flag:
// --max-payload-bytes is WEFT_MAX_PAYLOAD_BYTES.
const envPrefix = "WEFT_"

// servicesKey is the config file's list of registry entries; every other
// key is a flag name.
const servicesKey = "services"

// envName is the environment variable that sets a flag.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyConfig fills the flags the command line did not set: from the
// environment first, then from the YAML config file when path is set.
// The file maps flag names to values, as in "listen: 127.0.0.1:7233",
// and may list services to register at start under "services"; those
// are returned, validated.
func applyConfig(flags *pflag.FlagSet, path string) ([]store.Service, error) {
	file, services, err := readConfig(flags, path)
	if err != nil {
		return nil, err
	}

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
	if err != nil {
		return nil, err
	}

	return services, nil
}

// readConfig reads the config file at path, if any: its settings by flag
// name and its services.
func readConfig(flags *pflag.FlagSet, path string) (map[string]any, []store.Service, error) {
	file := map[string]any{}
	if path == "" {
		return file, nil, nil
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config file: %w", err)
	}

	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("reading config file %s: %w", path, err)
	}

	var services []store.Service
	for key, node := range doc {
		if key == servicesKey {
			services, err = readServices(&node)
			if err != nil {
				return nil, nil, fmt.Errorf("config file %s: %w", path, err)
			}

			continue
		}

		if f := flags.Lookup(key); f == nil || key == "config" {
			return nil, nil, fmt.Errorf("config file %s: unknown setting %q", path, key)
		}

		var v any
		if err := node.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("config file %s: %s: %w", path, key, err)
		}

		file[key] = v
	}

	return file, services, nil
}

// readServices reads the services list, refusing an entry at fault with
// its index, its name and the field.
func readServices(node *yaml.Node) ([]store.Service, error) {
	if node.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: line %d: not a list of services", servicesKey, node.Line)
	}

	var services []store.Service
	names := map[string]int{}
	for i, entry := range node.Content {
		svc, err := readService(entry)
		where := fmt.Sprintf("%s[%d]", servicesKey, i)
		if svc.Name != "" {
			where += fmt.Sprintf(" (%s)", svc.Name)
		}

		if err == nil {
			err = svc.Validate()
		}

		if j, dup := names[svc.Name]; dup && err == nil {
			err = fmt.Errorf("name: %q is listed already, as %s[%d]", svc.Name, servicesKey, j)
		}

		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}

		names[svc.Name] = i
		services = append(services, svc)
	}

	return services, nil
}

// readService reads one entry of the services list.
func readService(entry *yaml.Node) (store.Service, error) {
	var svc store.Service
	if entry.Kind != yaml.MappingNode {
		return svc, fmt.Errorf("line %d: not a mapping of service fields", entry.Line)
	}

	// The name first, so that a fault elsewhere can name the entry.
	for i := 0; i+1 < len(entry.Content); i += 2 {
		if entry.Content[i].Value == "name" {
			_ = entry.Content[i+1].Decode(&svc.Name)
		}
	}

	for i := 0; i+1 < len(entry.Content); i += 2 {
		key, value := entry.Content[i].Value, entry.Content[i+1]
		if err := setServiceField(&svc, key, value); err != nil {
			return svc, fmt.Errorf("%s: line %d: %w", key, value.Line, err)
		}
	}

	return svc, nil
}

// setServiceField decodes one field of a services entry into svc.
func setServiceField(svc *store.Service, key string, value *yaml.Node) error {
	switch key {
	case "name":
		return value.Decode(&svc.Name)
	case "mode":
		return value.Decode((*string)(&svc.Mode))
	case "addresses":
		return value.Decode(&svc.Addresses)
	case "concurrency":
		return value.Decode(&svc.Concurrency)
	case "rate":
		return value.Decode(&svc.Rate)
	case "burst":
		return value.Decode(&svc.Burst)
	case "dispatch_timeout":
		return decodeDuration(value, &svc.DispatchTimeout)
	case "dispatch_limit":
		return value.Decode(&svc.DispatchLimit)
	case "tls":
		return decodeTLS(value, &svc.TLS)
	}

	return fmt.Errorf("unknown field (want name, mode, addresses, concurrency, rate, burst, " +
		"tls, dispatch_timeout or dispatch_limit)")
}

// decodeDuration reads a Go duration such as "10s".
func decodeDuration(value *yaml.Node, d *time.Duration) error {
	var s string
	if err := value.Decode(&s); err != nil {
		return err
	}

	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s is not a duration such as 10s", strconv.Quote(s))
	}

	*d = v

	return nil
}

// decodeTLS reads the tls mapping of a services entry.
func decodeTLS(value *yaml.Node, t *store.ServiceTLS) error {
	if value.Kind != yaml.MappingNode {
		return fmt.Errorf("not a mapping of tls fields")
	}

	for i := 0; i+1 < len(value.Content); i += 2 {
		key, v := value.Content[i].Value, value.Content[i+1]
		var err error
		switch key {
		case "enabled":
			err = v.Decode(&t.Enabled)
		case "ca_file":
			err = v.Decode(&t.CAFile)
		case "cert_file":
			err = v.Decode(&t.CertFile)
		case "key_file":
			err = v.Decode(&t.KeyFile)
		case "server_name":
			err = v.Decode(&t.ServerName)
		default:
			err = fmt.Errorf("unknown field (want enabled, ca_file, cert_file, key_file or " +
				"server_name)")
		}

		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}

	return nil
}
