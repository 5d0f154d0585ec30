package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/weftworks/weft/store"
)

// RegisterService creates or replaces a service's registry entry, which
// every node sharing the store sees. An entry at fault is refused with a
// *store.FieldError naming the field (it wraps store.ErrInvalid).
func (e *Engine) RegisterService(ctx context.Context, s store.Service) (store.Service, error) {
	s, err := e.store.ServicePut(ctx, s, e.clock.Now())
	if err != nil {
		return store.Service{}, fmt.Errorf("registering service: %w", err)
	}

	e.log.Info("service registered", keyService, s.Name, keyMode, string(s.Mode))
	e.serviceWatch.notify()

	return s, nil
}

// DeleteService removes a service's registry entry; store.ErrInUse while
// tasks of it are queued. Definitions naming it stay registered, and new
// ones are refused until it is registered again.
func (e *Engine) DeleteService(ctx context.Context, name string) error {
	if err := e.store.ServiceDelete(ctx, name); err != nil {
		return err
	}

	e.log.Info("service deleted", keyService, name)
	e.serviceWatch.notify()

	return nil
}

// knownServices returns a test for the services a new definition may
// name: those in the registry and those with a Go handler in this engine.
func (e *Engine) knownServices(ctx context.Context) (func(string) bool, error) {
	registered, err := e.store.ServiceList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}

	known := e.handlers.services()
	for _, s := range registered {
		known = append(known, s.Name)
	}

	return func(name string) bool { return slices.Contains(known, name) }, nil
}
