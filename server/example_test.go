package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/server"
	"github.com/weftworks/weft/store/sqlite"
)

// Example serves the API from a program that embeds the engine, and
// calls it as any client would.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "weft-example-")
	defer os.RemoveAll(dir)

	st, err := sqlite.Open(ctx, filepath.Join(dir, "weft.db"))
	if err != nil {
		panic(err)
	}
	defer st.Close()
	quiet := slog.New(slog.DiscardHandler)
	eng := engine.New(st, engine.Options{Logger: quiet})
	if err := eng.Start(ctx); err != nil {
		panic(err)
	}
	defer eng.Stop()

	api := server.New(eng, server.Options{Logger: quiet})
	g := grpc.NewServer(api.ServerOptions()...)
	api.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.GracefulStop()
	defer api.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	// A definition may name only registered services.
	registry := weftv1.NewServiceRegistryServiceClient(conn)
	_, err = registry.RegisterService(ctx, &weftv1.RegisterServiceRequest{
		Service: &weftv1.Service{Name: "greeter", Mode: weftv1.ServiceMode_SERVICE_MODE_PULL},
	})
	if err != nil {
		panic(err)
	}

	defs := weftv1.NewWorkflowDefinitionServiceClient(conn)
	resp, err := defs.ValidateDefinition(ctx, &weftv1.ValidateDefinitionRequest{
		Source: "name: hello\nversion: 1\nsteps:\n  - {id: greet, type: task, service: greeter, action: greet}\n",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.GetValid(), resp.GetName(), resp.GetVersion())
	// Output: true hello 1
}
