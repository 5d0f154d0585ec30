package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftworks/weft/engine"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
	"github.com/weftworks/weft/store"
)

// registryService implements ServiceRegistryService.
type registryService struct {
	weftv1.UnimplementedServiceRegistryServiceServer
	s *Server
}

func (r *registryService) RegisterService(
	ctx context.Context, req *weftv1.RegisterServiceRequest,
) (*weftv1.RegisterServiceResponse, error) {
	svc, err := serviceFromMsg(req.GetService())
	if err != nil {
		return nil, err
	}

	stored, err := r.s.eng.RegisterService(ctx, svc)
	if err != nil {
		return nil, serviceFault(err)
	}

	return &weftv1.RegisterServiceResponse{Service: serviceMsg(stored)}, nil
}

func (r *registryService) GetService(
	ctx context.Context, req *weftv1.GetServiceRequest,
) (*weftv1.GetServiceResponse, error) {
	if err := required("name", req.GetName()); err != nil {
		return nil, err
	}

	svc, err := r.s.store.ServiceGet(ctx, req.GetName())
	if err != nil {
		return nil, onField("name", err)
	}

	return &weftv1.GetServiceResponse{Service: serviceMsg(svc)}, nil
}

func (r *registryService) ListServices(
	ctx context.Context, _ *weftv1.ListServicesRequest,
) (*weftv1.ListServicesResponse, error) {
	list, err := r.s.store.ServiceList(ctx)
	if err != nil {
		return nil, err
	}

	resp := &weftv1.ListServicesResponse{}
	for _, svc := range list {
		resp.Services = append(resp.Services, serviceMsg(svc))
	}

	return resp, nil
}

func (r *registryService) DeleteService(
	ctx context.Context, req *weftv1.DeleteServiceRequest,
) (*weftv1.DeleteServiceResponse, error) {
	if err := required("name", req.GetName()); err != nil {
		return nil, err
	}

	if err := r.s.eng.DeleteService(ctx, req.GetName()); err != nil {
		return nil, onField("name", err)
	}

	return &weftv1.DeleteServiceResponse{}, nil
}

// serviceFault turns a registry entry refused by the store into a refusal
// of the request field at fault.
func serviceFault(err error) error {
	var fe *store.FieldError
	if !errors.As(err, &fe) {
		return err
	}

	return &fieldError{
		field: "service." + fe.Field, err: errors.New(fe.Reason), sentinel: engine.ErrInvalid,
	}
}

// serviceFromMsg reads a registry entry from a request and validates it.
func serviceFromMsg(m *weftv1.Service) (store.Service, error) {
	if m == nil {
		return store.Service{}, invalidField("service", "required")
	}

	if err := name("service.name", m.GetName()); err != nil {
		return store.Service{}, err
	}

	svc := store.Service{
		Name:      m.GetName(),
		Mode:      modeFromMsg(m.GetMode()),
		Addresses: m.GetAddresses(),
		TLS: store.ServiceTLS{
			Enabled: m.GetTls().GetEnabled(), CAFile: m.GetTls().GetCaFile(),
			CertFile: m.GetTls().GetCertFile(), KeyFile: m.GetTls().GetKeyFile(),
			ServerName: m.GetTls().GetServerName(),
		},
		Concurrency:   int(m.GetConcurrency()),
		Rate:          m.GetRate(),
		Burst:         int(m.GetBurst()),
		DispatchLimit: int(m.GetDispatchLimit()),
	}
	if d := m.GetDispatchTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return store.Service{}, invalidField("service.dispatch_timeout", "%v", err)
		}

		svc.DispatchTimeout = d.AsDuration()
	}

	if err := svc.Validate(); err != nil {
		return store.Service{}, serviceFault(err)
	}

	return svc, nil
}

// modeFromMsg maps a mode; an unknown number becomes a mode Validate
// refuses by name.
func modeFromMsg(m weftv1.ServiceMode) store.ServiceMode {
	switch m {
	case weftv1.ServiceMode_SERVICE_MODE_UNSPECIFIED:
		return ""
	case weftv1.ServiceMode_SERVICE_MODE_PULL:
		return store.ServicePull
	case weftv1.ServiceMode_SERVICE_MODE_PUSH:
		return store.ServicePush
	}

	return store.ServiceMode(fmt.Sprintf("ServiceMode(%d)", m))
}

// serviceMsg is a registry entry as a message.
func serviceMsg(s store.Service) *weftv1.Service {
	msg := &weftv1.Service{
		Name:          s.Name,
		Mode:          weftv1.ServiceMode_SERVICE_MODE_PULL,
		Addresses:     s.Addresses,
		Concurrency:   int32(s.Concurrency),
		Rate:          s.Rate,
		Burst:         int32(s.Burst),
		DispatchLimit: int32(s.DispatchLimit),
		CreatedAt:     ts(s.CreatedAt),
		UpdatedAt:     ts(s.UpdatedAt),
	}
	if s.Mode == store.ServicePush {
		msg.Mode = weftv1.ServiceMode_SERVICE_MODE_PUSH
	}

	if s.TLS != (store.ServiceTLS{}) {
		msg.Tls = &weftv1.ServiceTLS{
			Enabled: s.TLS.Enabled, CaFile: s.TLS.CAFile, CertFile: s.TLS.CertFile,
			KeyFile: s.TLS.KeyFile, ServerName: s.TLS.ServerName,
		}
	}

	if s.DispatchTimeout > 0 {
		msg.DispatchTimeout = durationpb.New(s.DispatchTimeout)
	}

	return msg
}
