package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/push"
	"github.com/weftworks/weft/server"
	"github.com/weftworks/weft/store"
	"github.com/weftworks/weft/store/postgres"
	"github.com/weftworks/weft/store/storeurl"
)

// Log attribute keys of the serve command.
const (
	keyAddr     = "addr"
	keyDatabase = "database"
	keyNode     = "node"
	keyErr      = "err"
)

// serveFlags are the settings of weft serve; docs/configuration.md lists
// them with their defaults.
type serveFlags struct {
	config          string
	listen          string
	database        string
	insecure        bool
	tlsCert         string
	tlsKey          string
	clientCA        string
	identities      string
	logLevel        string
	logFormat       string
	nodeID          string
	shutdownTimeout time.Duration
	pollInterval    time.Duration
	maxPayloadBytes int
	maxInFlight     int
	taskClaimTTL    time.Duration
	leaseTTL        time.Duration
	cancelGrace     time.Duration
	workers         int
	// services are the config file's registry entries, put into the
	// registry at start.
	services []store.Service
}

func newServe(stderr io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the weft gRPC API on embedded SQLite or on PostgreSQL",
		Long: "serve runs the engine and its gRPC API (the weft.v1 services, the " +
			"standard health service and server reflection) on one port. Settings come from " +
			"flags, then WEFT_* environment variables, then the --config YAML file, which may " +
			"also list services to register at start.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			config := f.config
			if !cmd.Flags().Changed("config") {
				config = os.Getenv(envName("config"))
			}
			services, err := applyConfig(cmd.Flags(), config)
			if err != nil {
				return err
			}
			f.services = services
			return runServe(cmd.Context(), f, stderr)
		},
	}

	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML file of settings, keyed by flag name")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:7233", "address the gRPC server binds to")
	fl.StringVar(&f.database, "database", "weft.db",
		"SQLite database file (created when missing) or postgres:// URL")
	fl.BoolVar(&f.insecure, "insecure", false,
		"serve without TLS (and without authentication unless --identities): development only")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate chain of the server")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fl.StringVar(&f.clientCA, "client-ca", "",
		"PEM CA certificates that sign client certificates (mTLS); needs --tls-cert")
	fl.StringVar(&f.identities, "identities", "",
		"YAML file of identities, their roles, services and hashed tokens; turns authentication on")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fl.StringVar(&f.nodeID, "node-id", "", "name of this node in leases and claims (default random)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second,
		"how long a stop waits for calls and transitions in flight")
	fl.DurationVar(&f.pollInterval, "poll-interval", 200*time.Millisecond,
		"longest idle sleep of the engine's loops, long polls and watch streams")
	fl.IntVar(&f.maxPayloadBytes, "max-payload-bytes", 1<<20,
		"largest input, output or event data, in bytes of JSON")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 1024,
		"calls served at once before RESOURCE_EXHAUSTED")
	fl.DurationVar(&f.taskClaimTTL, "task-claim-ttl", 30*time.Second,
		"how long a polled task stays with its worker without a heartbeat")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 30*time.Second,
		"how long a node's lease on an instance lasts unrenewed before another node may take it")
	fl.DurationVar(&f.cancelGrace, "cancel-grace", 30*time.Second,
		"how long a cancel waits for attempts in flight")
	fl.IntVar(&f.workers, "workers", 32, "instances advanced at once")

	return cmd
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}

	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}

	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}

func runServe(ctx context.Context, f serveFlags, stderr io.Writer) error {
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.leaseTTL <= 0 {
		return fmt.Errorf("--lease-ttl: %v is not a positive duration", f.leaseTTL)
	}
	sec, err := loadSecurity(f, log)
	if err != nil {
		return err
	}

	st, err := storeurl.Open(ctx, f.database, storeurl.Options{
		Postgres: []postgres.Option{postgres.WithLogger(log)},
	})
	if err != nil {
		return fmt.Errorf("opening --database %s: %w", f.database, err)
	}
	defer st.Close()

	defer log.Info("stopped")
	eng := engine.New(st, engine.Options{
		NodeID: f.nodeID, Logger: log, Workers: f.workers, PollInterval: f.pollInterval,
		CancelGrace: f.cancelGrace, MaxPayloadBytes: f.maxPayloadBytes, LeaseTTL: f.leaseTTL,
	})
	for i, svc := range f.services {
		if _, err := eng.RegisterService(ctx, svc); err != nil {
			return fmt.Errorf("config file: services[%d] (%s): %w", i, svc.Name, err)
		}
	}
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("starting the engine: %w", err)
	}
	defer eng.Stop()

	pushCtx, stopPush := context.WithCancel(ctx)
	pusher := push.New(eng, push.Options{
		NodeID: eng.NodeID(), Logger: log, PollInterval: f.pollInterval,
	})
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		_ = pusher.Run(pushCtx)
	}()
	defer func() { stopPush(); <-pushed }()

	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", f.listen, err)
	}

	api := server.New(eng, server.Options{
		Logger: log, MaxPayloadBytes: f.maxPayloadBytes, MaxInFlight: f.maxInFlight,
		TaskClaimTTL: f.taskClaimTTL, PollInterval: f.pollInterval, Auth: sec.auth,
	})

	return serveUntilDone(ctx, log, f, lis, api, sec.creds)
}

// serveUntilDone serves on lis until ctx ends, then stops gracefully:
// health turns NOT_SERVING, streams end, calls in flight finish (up to
// the shutdown timeout), and the caller's deferred engine stop waits for
// transitions in flight.
func serveUntilDone(
	ctx context.Context, log *slog.Logger, f serveFlags, lis net.Listener,
	api *server.Server, creds []grpc.ServerOption,
) error {
	g := grpc.NewServer(append(api.ServerOptions(), creds...)...)
	api.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	for _, name := range []string{
		"", weftv1.WorkflowDefinitionService_ServiceDesc.ServiceName,
		weftv1.WorkflowExecutionService_ServiceDesc.ServiceName,
		weftv1.WorkflowStateService_ServiceDesc.ServiceName,
		weftv1.StepExecutionService_ServiceDesc.ServiceName,
		weftv1.ServiceRegistryService_ServiceDesc.ServiceName,
	} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(g)

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("serving", keyAddr, lis.Addr().String(), keyDatabase, f.database)

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}

	log.Info("stopping")
	hs.Shutdown()
	api.Stop()
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(f.shutdownTimeout):
		log.Warn("calls still in flight at the shutdown timeout; ending them")
		g.Stop()
	}

	return nil
}
