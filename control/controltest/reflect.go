package controltest

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Reflected is what a generic client learned through server reflection.
type Reflected struct {
	// Services are the service names the server lists.
	Services []string
	// Files resolves the descriptors the server sent (a registry of its own,
	// never the global one).
	Files *protoregistry.Files
}

// Reflect lists the server's services and resolves the descriptors of
// symbol (a service name) with the grpc.reflection.v1 API only: no generated
// stubs of ours are involved, as for grpcurl or any other generic client.
func Reflect(ctx context.Context, conn grpc.ClientConnInterface, symbol string) (*Reflected, error) {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("open reflection stream: %w", err)
	}
	defer stream.CloseSend()
	ask := func(req *reflectionpb.ServerReflectionRequest) (*reflectionpb.ServerReflectionResponse, error) {
		if err := stream.Send(req); err != nil {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if e := resp.GetErrorResponse(); e != nil {
			return nil, fmt.Errorf("reflection: %s", e.GetErrorMessage())
		}
		return resp, nil
	}
	list, err := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	if err != nil {
		return nil, err
	}
	out := &Reflected{Files: &protoregistry.Files{}}
	for _, s := range list.GetListServicesResponse().GetService() {
		out.Services = append(out.Services, s.GetName())
	}
	files, err := ask(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol}})
	if err != nil {
		return nil, err
	}
	// The answer holds the file and its dependencies in any order.
	pending := map[string]*descriptorpb.FileDescriptorProto{}
	for _, raw := range files.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			return nil, fmt.Errorf("decode descriptor: %w", err)
		}
		pending[fd.GetName()] = fd
	}
	for len(pending) > 0 {
		progress := false
		for name, fd := range pending {
			f, err := protodesc.NewFile(fd, out.Files)
			if err != nil {
				continue // a dependency is not registered yet
			}
			if err := out.Files.RegisterFile(f); err != nil {
				return nil, err
			}
			delete(pending, name)
			progress = true
		}
		if !progress {
			return nil, fmt.Errorf("cannot resolve descriptors %v", slices.Sorted(maps.Keys(pending)))
		}
	}
	return out, nil
}

// Invoke calls service/method with an empty request built from the
// reflected descriptors and returns the dynamic response.
func (r *Reflected) Invoke(ctx context.Context, conn grpc.ClientConnInterface, service, method string) (*dynamicpb.Message, error) {
	d, err := r.Files.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", service)
	}
	m := sd.Methods().ByName(protoreflect.Name(method))
	if m == nil {
		return nil, fmt.Errorf("service %s has no method %s", service, method)
	}
	req, resp := dynamicpb.NewMessage(m.Input()), dynamicpb.NewMessage(m.Output())
	if err := conn.Invoke(ctx, "/"+service+"/"+method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}
