package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/weftworks/weft/definition"
	"github.com/weftworks/weft/internal/servicetls"
	"github.com/weftworks/weft/store"
)

// RegisterService creates or replaces a service's registry entry, which
// every node sharing the store sees. An entry at fault is refused with a
// *store.FieldError naming the field (it wraps store.ErrInvalid).
func (e *Engine) RegisterService(ctx context.Context, s store.Service) (store.Service, error) {
	if err := s.Validate(); err != nil {
		return store.Service{}, fmt.Errorf("registering service: %w", err)
	}
	// The files are read on this node; every node dialling the service
	// needs them at the same paths.
	if _, err := servicetls.Config(s); err != nil {
		return store.Service{}, fmt.Errorf("registering service: %w", err)
	}

	s, err := e.store.ServicePut(ctx, s, e.clock.Now())
	if err != nil {
		return store.Service{}, fmt.Errorf("registering service: %w", err)
	}

	e.log.Info("service registered", keyService, s.Name, keyMode, string(s.Mode))
	e.serviceWatch.notify()

	return s, nil
}

// DeleteService removes a service's registry entry; store.ErrInUse while
// an active definition names it (deprecate the definition first) or
// tasks of it are queued.
func (e *Engine) DeleteService(ctx context.Context, name string) error {
	if _, err := e.store.ServiceGet(ctx, name); err != nil {
		return err
	}
	defs, err := e.definitionsNaming(ctx, name)
	if err != nil {
		return err
	}
	if len(defs) > 0 {
		return fmt.Errorf("deleting service %s: active definitions name it (%s); deprecate them first: %w",
			name, strings.Join(defs, ", "), store.ErrInUse)
	}

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

// definitionsNaming returns "name vN" of each active definition with a
// task step on service.
func (e *Engine) definitionsNaming(ctx context.Context, service string) ([]string, error) {
	defs, err := e.store.DefinitionList(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing definitions: %w", err)
	}

	var naming []string
	for _, d := range defs {
		if d.Status != store.DefinitionActive {
			continue
		}

		g, err := e.defs.compiled(d)
		if err != nil {
			return nil, err
		}
		for _, n := range g.Nodes {
			if n.Kind == definition.KindTask && n.Service == service {
				naming = append(naming, fmt.Sprintf("%s v%d", d.Name, d.Version))
				break
			}
		}
	}

	return naming, nil
}
