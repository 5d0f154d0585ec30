package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// clientFlags are the flags every client verb shares.
type clientFlags struct {
	address    string
	output     string
	timeout    time.Duration
	token      string
	tlsCA      string
	tlsCert    string
	tlsKey     string
	serverName string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.address, "address", envOr("WEFT_ADDRESS", "127.0.0.1:7233"),
		"address of the weft server (env WEFT_ADDRESS)")
	pf.StringVarP(&f.output, "output", "o", "table", "table or json")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long a call may take (not --wait or follow)")
	pf.StringVar(&f.token, "token", "", "bearer token to call with (env WEFT_TOKEN)")
	pf.StringVar(&f.tlsCA, "tls-ca", envOr("WEFT_TLS_CA", ""),
		"PEM CA that signs the server's certificate; turns TLS on (env WEFT_TLS_CA)")
	pf.StringVar(&f.tlsCert, "tls-cert", envOr("WEFT_CLIENT_CERT", ""),
		"PEM client certificate for mTLS (env WEFT_CLIENT_CERT)")
	pf.StringVar(&f.tlsKey, "tls-key", envOr("WEFT_CLIENT_KEY", ""),
		"PEM private key of --tls-cert (env WEFT_CLIENT_KEY)")
	pf.StringVar(&f.serverName, "tls-server-name", "", "name to check the server's certificate for")
}

// dialOptions are the transport and call credentials the flags ask for.
func (f *clientFlags) dialOptions() ([]grpc.DialOption, error) {
	token := f.token
	if token == "" {
		token = os.Getenv("WEFT_TOKEN")
	}
	if f.tlsCA == "" {
		if f.tlsCert != "" {
			return nil, errors.New("--tls-cert needs --tls-ca")
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, secure: false}))
		}
		return opts, nil
	}

	pool, err := loadPool(f.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: f.serverName, MinVersion: tls.VersionTLS12}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: token, secure: true}))
	}

	return opts, nil
}

// bearer sends a token in the authorization header of every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}

	return def
}

// client is a connection to a weft server with its service clients.
type client struct {
	conn  *grpc.ClientConn
	defs  weftv1.WorkflowDefinitionServiceClient
	exec  weftv1.WorkflowExecutionServiceClient
	state weftv1.WorkflowStateServiceClient
	tasks weftv1.UserTaskServiceClient
	// registry is the ServiceRegistryService client.
	registry weftv1.ServiceRegistryServiceClient
	out      io.Writer
	flags    *clientFlags
}

// dial connects to the server, over TLS when --tls-ca is set.
func (f *clientFlags) dial(out io.Writer) (*client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("--output: %q is neither table nor json", f.output)
	}

	opts, err := f.dialOptions()
	if err != nil {
		return nil, err
	}

	conn, err := grpc.NewClient(f.address, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to --address %s: %w", f.address, err)
	}

	return &client{
		conn:     conn,
		defs:     weftv1.NewWorkflowDefinitionServiceClient(conn),
		exec:     weftv1.NewWorkflowExecutionServiceClient(conn),
		state:    weftv1.NewWorkflowStateServiceClient(conn),
		tasks:    weftv1.NewUserTaskServiceClient(conn),
		registry: weftv1.NewServiceRegistryServiceClient(conn),
		out:      out,
		flags:    f,
	}, nil
}

// call runs one client verb: it dials, bounds the call by --timeout
// unless unbounded, and turns a gRPC status into a plain message.
func (f *clientFlags) call(
	cmd *cobra.Command, out io.Writer, unbounded bool, run func(context.Context, *client) error,
) error {
	c, err := f.dial(out)
	if err != nil {
		return err
	}
	defer c.conn.Close()

	ctx := cmd.Context()
	if !unbounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}

	return statusError(run(ctx, c))
}

// statusError words a gRPC status as "code: message".
func statusError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}

	st, ok := status.FromError(err)
	if !ok {
		return err
	}

	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

// json reports whether -o json was asked for.
func (c *client) json() bool { return c.flags.output == "json" }

// printJSON writes a response as indented protojson.
func (c *client) printJSON(m proto.Message) error {
	raw, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding the answer: %w", err)
	}
	_, err = fmt.Fprintln(c.out, string(raw))

	return err
}

// table writes rows under a header, columns aligned.
func (c *client) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	line := func(cells []string) {
		for _, cell := range cells {
			fmt.Fprint(tw, cell, "\t")
		}
		fmt.Fprintln(tw)
	}
	line(header)
	for _, r := range rows {
		line(r)
	}

	return tw.Flush()
}

// readJSONArg returns a JSON argument given inline or as @file.
func readJSONArg(flag, v string) (string, error) {
	if len(v) > 0 && v[0] == '@' {
		raw, err := os.ReadFile(v[1:])
		if err != nil {
			return "", fmt.Errorf("reading --%s: %w", flag, err)
		}
		v = string(raw)
	}
	if v != "" && !json.Valid([]byte(v)) {
		return "", fmt.Errorf("--%s: malformed JSON", flag)
	}

	return v, nil
}
