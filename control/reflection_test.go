package control_test

import (
	"slices"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/anycast-director/director/control/controltest"
)

// A client that knows nothing of our .proto files discovers the service
// through reflection and calls GetStatus with dynamic messages.
func TestGenericClientThroughReflection(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	r, err := controltest.Reflect(ctx, h.Conn, "director.v1.Director")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"director.v1.Director", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(r.Services, want) {
			t.Errorf("services %v lack %s", r.Services, want)
		}
	}
	resp, err := r.Invoke(ctx, h.Conn, "director.v1.Director", "GetStatus")
	if err != nil {
		t.Fatal(err)
	}
	fields := resp.Descriptor().Fields()
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
