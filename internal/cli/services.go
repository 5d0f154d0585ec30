package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// serviceFlags are the settings of weft service register.
type serviceFlags struct {
	mode            string
	addresses       []string
	concurrency     int32
	rate            float64
	burst           int32
	tls             bool
	ca              string
	cert            string
	key             string
	serverName      string
	dispatchTimeout time.Duration
	dispatchLimit   int32
}

func newServiceCmd(f *clientFlags, out io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"services", "svc"},
		Short:   "Register, read and delete the services task steps name",
	}
	cmd.AddCommand(
		newServiceRegisterCmd(f, out),
		&cobra.Command{
			Use: "get NAME", Short: "Show a service's registry entry",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.getService(ctx, args[0])
				})
			},
		},
		&cobra.Command{
			Use: "list", Short: "List the registered services",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.listServices(ctx)
				})
			},
		},
		&cobra.Command{
			Use: "delete NAME", Short: "Delete a service that has no queued tasks",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
					return c.deleteService(ctx, args[0])
				})
			},
		},
	)

	return cmd
}

func newServiceRegisterCmd(f *clientFlags, out io.Writer) *cobra.Command {
	var sf serviceFlags
	cmd := &cobra.Command{
		Use:   "register NAME",
		Short: "Register a service, or replace its entry",
		Long: "register creates a service's registry entry, or replaces the whole entry " +
			"of that name: flags left out take their defaults, not the old values.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := sf.service(args[0])
			if err != nil {
				return err
			}

			return f.call(cmd, out, false, func(ctx context.Context, c *client) error {
				return c.registerService(ctx, svc)
			})
		},
	}

	fl := cmd.Flags()
	fl.StringVar(&sf.mode, "mode", "pull",
		"pull (workers poll weft) or push (weft calls the service's StepWorkerService)")
	// Not --address: that names the weft server, for every verb.
	fl.StringArrayVar(&sf.addresses, "target", nil,
		"host:port of the service's StepWorkerService, for push; repeat for several")
	fl.Int32Var(&sf.concurrency, "concurrency", 0,
		"attempts held at once across every node (0: no cap)")
	fl.Float64Var(&sf.rate, "rate", 0, "attempts started per second across every node (0: no cap)")
	fl.Int32Var(&sf.burst, "burst", 0, "attempts that may start at once under --rate (0: 1)")
	fl.BoolVar(&sf.tls, "tls", false, "dial the push service with TLS")
	fl.StringVar(&sf.ca, "ca", "",
		"PEM roots to trust when dialling, on weft's host (default the system's)")
	fl.StringVar(&sf.cert, "cert", "",
		"PEM client certificate for mTLS, on weft's host; with --key")
	fl.StringVar(&sf.key, "key", "", "PEM private key of --cert, on weft's host")
	fl.StringVar(&sf.serverName, "server-name", "",
		"name checked in the service's certificate, when not the address's host")
	fl.DurationVar(&sf.dispatchTimeout, "dispatch-timeout", 0,
		fmt.Sprintf("deadline of one ExecuteTask call (0: the default, %s)", store.DefaultDispatchTimeout))
	fl.Int32Var(&sf.dispatchLimit, "dispatch-limit", 0,
		fmt.Sprintf("calls per attempt while the service is unreachable before the attempt fails "+
			"(0: the default, %d)", store.DefaultDispatchLimit))

	return cmd
}

// service builds the registry entry the flags describe. The server
// validates it; only the mode's spelling is checked here.
func (sf *serviceFlags) service(name string) (*weftv1.Service, error) {
	svc := &weftv1.Service{
		Name: name, Addresses: sf.addresses, Concurrency: sf.concurrency, Rate: sf.rate,
		Burst: sf.burst, DispatchLimit: sf.dispatchLimit,
	}
	switch sf.mode {
	case "pull":
		svc.Mode = weftv1.ServiceMode_SERVICE_MODE_PULL
	case "push":
		svc.Mode = weftv1.ServiceMode_SERVICE_MODE_PUSH
	default:
		return nil, fmt.Errorf("--mode: %q is neither pull nor push", sf.mode)
	}

	if sf.tls || sf.ca != "" || sf.cert != "" || sf.key != "" || sf.serverName != "" {
		svc.Tls = &weftv1.ServiceTLS{
			Enabled: sf.tls, CaFile: sf.ca, CertFile: sf.cert, KeyFile: sf.key,
			ServerName: sf.serverName,
		}
	}

	if sf.dispatchTimeout != 0 {
		svc.DispatchTimeout = durationpb.New(sf.dispatchTimeout)
	}

	return svc, nil
}

func (c *client) registerService(ctx context.Context, svc *weftv1.Service) error {
	resp, err := c.registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{Service: svc})
	if err != nil {
		return fmt.Errorf("registering service %s: %w", svc.GetName(), statusError(err))
	}
	if c.json() {
		return c.printJSON(resp)
	}

	return c.serviceTable([]*weftv1.Service{resp.GetService()})
}

func (c *client) getService(ctx context.Context, name string) error {
	resp, err := c.registry.GetService(ctx, &weftv1.GetServiceRequest{Name: name})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	return c.serviceTable([]*weftv1.Service{resp.GetService()})
}

func (c *client) listServices(ctx context.Context) error {
	resp, err := c.registry.ListServices(ctx, &weftv1.ListServicesRequest{})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}

	return c.serviceTable(resp.GetServices())
}

func (c *client) deleteService(ctx context.Context, name string) error {
	resp, err := c.registry.DeleteService(ctx, &weftv1.DeleteServiceRequest{Name: name})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	_, err = fmt.Fprintf(c.out, "deleted service %s\n", name)

	return err
}

func (c *client) serviceTable(services []*weftv1.Service) error {
	rows := make([][]string, 0, len(services))
	for _, s := range services {
		rows = append(rows, []string{
			s.GetName(), enumWord(s.GetMode().String()), dash(strings.Join(s.GetAddresses(), ",")),
			dash(tlsWord(s.GetTls())), limitWord(int64(s.GetConcurrency())), rateWord(s),
			dash(dispatchWord(s)), s.GetUpdatedAt().AsTime().Format(time.RFC3339),
		})
	}

	return c.table([]string{"NAME", "MODE", "ADDRESSES", "TLS", "CONCURRENCY", "RATE",
		"DISPATCH", "UPDATED"}, rows)
}

// dash stands for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}

	return s
}

// limitWord is a cap, or "-" for none.
func limitWord(n int64) string {
	if n == 0 {
		return "-"
	}

	return strconv.FormatInt(n, 10)
}

// rateWord is a rate with its burst, as "2.5/s burst 4", or "-".
func rateWord(s *weftv1.Service) string {
	if s.GetRate() == 0 {
		return "-"
	}

	return fmt.Sprintf("%s/s burst %d", strconv.FormatFloat(s.GetRate(), 'f', -1, 64),
		max(s.GetBurst(), 1))
}

// tlsWord says how weft dials: "mtls", "tls" or "" for plaintext.
func tlsWord(t *weftv1.ServiceTLS) string {
	switch {
	case !t.GetEnabled():
		return ""
	case t.GetCertFile() != "":
		return "mtls"
	}

	return "tls"
}

// dispatchWord is a push service's timeout and limit, as "10s x5".
func dispatchWord(s *weftv1.Service) string {
	if s.GetMode() != weftv1.ServiceMode_SERVICE_MODE_PUSH {
		return ""
	}

	svc := store.Service{
		DispatchTimeout: s.GetDispatchTimeout().AsDuration(), DispatchLimit: int(s.GetDispatchLimit()),
	}

	return fmt.Sprintf("%s x%d", svc.Timeout(), svc.Limit())
}
