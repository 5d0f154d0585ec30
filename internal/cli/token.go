package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftworks/weft/server"
)

func newTokenCmd(out io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Make bearer tokens for the identities file"}

	var roles, services []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Print a new random token and the identities entry that holds its hash",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id := server.Identity{Name: args[0], Services: services}
			for _, r := range roles {
				id.Roles = append(id.Roles, server.Role(r))
			}
			if _, err := server.NewAuth([]server.Identity{id}, nil); err != nil {
				return fmt.Errorf("--role: %w", err)
			}

			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return fmt.Errorf("making a token: %w", err)
			}
			token := base64.RawURLEncoding.EncodeToString(raw)

			fmt.Fprintf(out, "token (give it to %s; weft keeps only its hash): %s\n\n", args[0], token)
			fmt.Fprintf(out, "  - name: %s\n    roles: [%s]\n", args[0], strings.Join(roles, ", "))
			if len(services) > 0 {
				fmt.Fprintf(out, "    services: [%s]\n", strings.Join(services, ", "))
			}
			_, err := fmt.Fprintf(out, "    token_sha256: %s\n", server.HashToken(token))
			return err
		},
	}
	create.Flags().StringSliceVar(&roles, "role", []string{"reader"}, "admin, operator, reader, worker or user_task")
	create.Flags().StringSliceVar(&services, "service", nil, "services a worker runs")
	cmd.AddCommand(create)

	return cmd
}
