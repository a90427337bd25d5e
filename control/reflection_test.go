package control_test

import (
	"maps"
	"slices"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/anycast-director/director/control/controltest"
)

// reflect sends one reflection request and returns the answer.
func reflect(t *testing.T, stream grpc.BidiStreamingClient[reflectionpb.ServerReflectionRequest, reflectionpb.ServerReflectionResponse],
	req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
	t.Helper()
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("reflection error: %s", e.GetErrorMessage())
	}
	return resp
}

// A client that knows nothing of our .proto files discovers the service
// through reflection and calls GetStatus with dynamic messages.
func TestGenericClientThroughReflection(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	stream, err := reflectionpb.NewServerReflectionClient(h.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list := reflect(t, stream, &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range list.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"director.v1.Director", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("services %v lack %s", names, want)
		}
	}

	files := reflect(t, stream, &reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "director.v1.Director"}})
	// The answer holds the file and its dependencies, in any order: resolve
	// them into a registry of our own (not the global one).
	pending := map[string]*descriptorpb.FileDescriptorProto{}
	for _, raw := range files.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(raw, fd); err != nil {
			t.Fatal(err)
		}
		pending[fd.GetName()] = fd
	}
	reg := &protoregistry.Files{}
	for len(pending) > 0 {
		progress := false
		for name, fd := range pending {
			f, err := protodesc.NewFile(fd, reg)
			if err != nil {
				continue // a dependency is not registered yet
			}
			if err := reg.RegisterFile(f); err != nil {
				t.Fatal(err)
			}
			delete(pending, name)
			progress = true
		}
		if !progress {
			t.Fatalf("cannot resolve descriptors %v", slices.Collect(maps.Keys(pending)))
		}
	}
	d, err := reg.FindDescriptorByName("director.v1.Director")
	if err != nil {
		t.Fatal(err)
	}
	method := d.(protoreflect.ServiceDescriptor).Methods().ByName("GetStatus")
	if method == nil {
		t.Fatal("reflection shows no GetStatus method")
	}
	req := dynamicpb.NewMessage(method.Input())
	resp := dynamicpb.NewMessage(method.Output())
	if err := h.Conn.Invoke(ctx, "/director.v1.Director/GetStatus", req, resp); err != nil {
		t.Fatal(err)
	}
	fields := method.Output().Fields()
	if got := resp.Get(fields.ByName("director")).String(); got != "t1" {
		t.Errorf("director = %q, want t1", got)
	}
	if got := resp.Get(fields.ByName("vips")).List().Len(); got != 2 {
		t.Errorf("%d VIPs, want 2", got)
	}

	// The standard health service answers too.
	hc, err := healthpb.NewHealthClient(h.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "director.v1.Director"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check = %v, %v", hc, err)
	}
}
