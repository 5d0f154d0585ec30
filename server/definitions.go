package server

import (
	"context"
	"errors"

	"github.com/weftworks/weft/definition"
	weftv1 "github.com/weftworks/weft/gen/weft/v1"
)

// definitionService implements WorkflowDefinitionService.
type definitionService struct {
	weftv1.UnimplementedWorkflowDefinitionServiceServer
	s *Server
}

// maxSourceBytes is the largest definition source a request may carry.
const maxSourceBytes = definition.MaxDefinitionBytes

func checkSource(src string) error {
	if src == "" {
		return invalidField("source", "required")
	}
	if len(src) > maxSourceBytes {
		return invalidField("source", "%d bytes, over the limit of %d", len(src), maxSourceBytes)
	}

	return nil
}

func (d *definitionService) RegisterDefinition(
	ctx context.Context, req *weftv1.RegisterDefinitionRequest,
) (*weftv1.RegisterDefinitionResponse, error) {
	if err := checkSource(req.GetSource()); err != nil {
		return nil, err
	}

	def, err := d.s.eng.RegisterDefinition(ctx, []byte(req.GetSource()))
	if err != nil {
		return nil, onField("source", err)
	}

	rec, err := d.s.store.DefinitionGet(ctx, def.Name, def.Version)
	if err != nil {
		return nil, err
	}

	return &weftv1.RegisterDefinitionResponse{Definition: definitionMsg(rec, true)}, nil
}

func (d *definitionService) ValidateDefinition(
	ctx context.Context, req *weftv1.ValidateDefinitionRequest,
) (*weftv1.ValidateDefinitionResponse, error) {
	if err := checkSource(req.GetSource()); err != nil {
		return nil, err
	}

	def, _, err := d.s.eng.ValidateDefinition(ctx, []byte(req.GetSource()))
	var verr *definition.ValidationError
	if errors.As(err, &verr) {
		resp := &weftv1.ValidateDefinitionResponse{}
		for _, f := range verr.Faults {
			resp.Faults = append(resp.Faults, &weftv1.Fault{Path: f.Path, Message: f.Message})
		}
		return resp, nil
	}
	if err != nil {
		return nil, onField("source", err)
	}

	return &weftv1.ValidateDefinitionResponse{
		Valid: true, Name: def.Name, Version: int32(def.Version),
	}, nil
}

func (d *definitionService) GetDefinition(
	ctx context.Context, req *weftv1.GetDefinitionRequest,
) (*weftv1.GetDefinitionResponse, error) {
	err := first(required("name", req.GetName()), notNegative("version", req.GetVersion()))
	if err != nil {
		return nil, err
	}

	rec, err := d.s.store.DefinitionGet(ctx, req.GetName(), int(req.GetVersion()))
	if err != nil {
		return nil, onField("name", err)
	}

	return &weftv1.GetDefinitionResponse{Definition: definitionMsg(rec, true)}, nil
}

func (d *definitionService) ListDefinitions(
	ctx context.Context, req *weftv1.ListDefinitionsRequest,
) (*weftv1.ListDefinitionsResponse, error) {
	if err := name("name", req.GetName()); err != nil {
		return nil, err
	}

	recs, err := d.s.store.DefinitionList(ctx, req.GetName())
	if err != nil {
		return nil, err
	}

	resp := &weftv1.ListDefinitionsResponse{}
	for _, rec := range recs {
		resp.Definitions = append(resp.Definitions, definitionMsg(rec, false))
	}

	return resp, nil
}

func (d *definitionService) DeprecateDefinition(
	ctx context.Context, req *weftv1.DeprecateDefinitionRequest,
) (*weftv1.DeprecateDefinitionResponse, error) {
	err := first(required("name", req.GetName()), positive("version", int64(req.GetVersion())))
	if err != nil {
		return nil, err
	}

	if err := d.s.eng.DeprecateDefinition(ctx, req.GetName(), int(req.GetVersion())); err != nil {
		return nil, onField("name", err)
	}

	rec, err := d.s.store.DefinitionGet(ctx, req.GetName(), int(req.GetVersion()))
	if err != nil {
		return nil, err
	}

	return &weftv1.DeprecateDefinitionResponse{Definition: definitionMsg(rec, false)}, nil
}

func (d *definitionService) DeleteDefinition(
	ctx context.Context, req *weftv1.DeleteDefinitionRequest,
) (*weftv1.DeleteDefinitionResponse, error) {
	err := first(required("name", req.GetName()), positive("version", int64(req.GetVersion())))
	if err != nil {
		return nil, err
	}

	if err := d.s.eng.DeleteDefinition(ctx, req.GetName(), int(req.GetVersion())); err != nil {
		return nil, onField("name", err)
	}

	return &weftv1.DeleteDefinitionResponse{}, nil
}

func notNegative(field string, v int32) error {
	if v < 0 {
		return invalidField(field, "must not be negative, got %d", v)
	}

	return nil
}
