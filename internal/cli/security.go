package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weftworks/weft/server"
)

// security is what serve's TLS and identity flags come to.
type security struct {
	creds []grpc.ServerOption
	auth  *server.Auth
}

// loadSecurity reads the certificates and identities serve is given, and
// refuses a setup that would be insecure without --insecure.
func loadSecurity(f serveFlags, log *slog.Logger) (security, error) {
	var sec security
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return sec, errors.New("--tls-cert and --tls-key go together")
	}
	if f.clientCA != "" && f.tlsCert == "" {
		return sec, errors.New("--client-ca needs --tls-cert")
	}
	if f.tlsCert == "" && !f.insecure {
		return sec, errors.New("serve needs --tls-cert and --tls-key, or --insecure for development")
	}

	var clientCAs *x509.CertPool
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return sec, fmt.Errorf("loading --tls-cert: %w", err)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if f.clientCA != "" {
			if clientCAs, err = loadPool(f.clientCA); err != nil {
				return sec, err
			}
			// The chain is verified per call, so that a wrong certificate is
			// answered UNAUTHENTICATED rather than by a failed handshake.
			cfg.ClientAuth = tls.RequestClientCert
		}
		sec.creds = append(sec.creds, grpc.Creds(credentials.NewTLS(cfg)))
	}

	if f.identities == "" {
		if !f.insecure {
			return sec, errors.New("serve with TLS needs --identities, or --insecure to let anyone in")
		}
		log.Warn("serving without authentication: any caller may do anything; " +
			"use --insecure only for development")
		return sec, nil
	}

	ids, err := server.LoadIdentities(f.identities)
	if err != nil {
		return sec, err
	}
	if sec.auth, err = server.NewAuth(ids, clientCAs); err != nil {
		return sec, fmt.Errorf("--identities %s: %w", f.identities, err)
	}
	if f.tlsCert == "" {
		log.Warn("serving without TLS: bearer tokens travel in the clear; " +
			"use --insecure only for development")
	}

	return sec, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates: %w", err)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("reading CA certificates %s: no PEM certificate in it", path)
	}

	return pool, nil
}
