// Package servicetls builds the TLS configuration weft dials a push
// service with, from the service's registry entry: the engine checks it
// when the entry is registered, the push dispatcher dials with it.
package servicetls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/weftworks/weft/store"
)

// Config returns the client TLS configuration of svc, nil when its TLS
// is off. A file that cannot be read or parsed is a *store.FieldError
// naming its field.
func Config(svc store.Service) (*tls.Config, error) {
	if !svc.TLS.Enabled {
		return nil, nil
	}

	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: svc.TLS.ServerName}
	if svc.TLS.CAFile != "" {
		pem, err := os.ReadFile(svc.TLS.CAFile)
		if err != nil {
			return nil, &store.FieldError{Field: "tls.ca_file", Reason: fmt.Sprintf("reading it: %v", err)}
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &store.FieldError{
				Field: "tls.ca_file", Reason: fmt.Sprintf("%s holds no PEM certificate", svc.TLS.CAFile),
			}
		}
	}
	if svc.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(svc.TLS.CertFile, svc.TLS.KeyFile)
		if err != nil {
			return nil, &store.FieldError{
				Field: "tls.cert_file", Reason: fmt.Sprintf("loading it with tls.key_file: %v", err),
			}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}

	return cfg, nil
}
