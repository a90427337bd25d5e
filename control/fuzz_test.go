package control_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// directorMethods lists the Director service's methods in declaration order:
// the fuzz input's first value picks one, so a new call is fuzzed without
// touching this file.
func directorMethods() []protoreflect.MethodDescriptor {
	sd := directorv1.File_director_v1_director_proto.Services().ByName("Director")
	out := make([]protoreflect.MethodDescriptor, sd.Methods().Len())
	for i := range out {
		out[i] = sd.Methods().Get(i)
	}
	return out
}

// seedRequests are valid and malformed requests for every call, the seed
// corpus besides testdata/fuzz/FuzzRequests.
func seedRequests() []proto.Message {
	web := &directorv1.BackendRef{Service: "web", Address: "10.0.2.21"}
	return []proto.Message{
		&directorv1.GetStatusRequest{},
		&directorv1.WatchRequest{AfterSeq: 3, Epoch: "x"},
		&directorv1.WatchRequest{FromNow: true},
		&directorv1.DrainBackendRequest{Backend: web, Reason: "TICKET-1", ExpiresAfter: durationpb.New(time.Hour)},
		&directorv1.DrainBackendRequest{Backend: &directorv1.BackendRef{Address: "10.0.0.300", Port: 70000}},
		&directorv1.DrainBackendRequest{Backend: web, ExpiresAfter: &durationpb.Duration{Seconds: -1, Nanos: 5}},
		&directorv1.EnableBackendRequest{Backend: &directorv1.BackendRef{Address: "10.0.2.21"}},
		&directorv1.SetWeightRequest{Backend: web, Weight: 70000},
		&directorv1.SetWeightRequest{Backend: web, Clear: true, Reason: "a\nb"},
		&directorv1.DisableVIPRequest{Vip: "198.18.0.10", ExpiresAfter: durationpb.New(8760*time.Hour + time.Second)},
		&directorv1.EnableVIPRequest{Vip: "::ffff:198.18.0.10"},
		&directorv1.DrainDirectorRequest{Reason: strings.Repeat("x", 600)},
		&directorv1.UndrainDirectorRequest{Reason: "bell \x07"},
		&directorv1.ReloadRequest{DryRun: true},
		&directorv1.RollbackRequest{Version: -1},
		&directorv1.RollbackRequest{Version: 1 << 40, DryRun: true},
		&directorv1.ListConfigsRequest{},
		&directorv1.GetConfigRequest{Version: 1},
		&directorv1.RouterConfigRequest{Flavor: directorv1.RouterFlavor_ROUTER_FLAVOR_FRR},
		&directorv1.RouterConfigRequest{Flavor: directorv1.RouterFlavor_ROUTER_FLAVOR_BIRD, RouterAddresses: []string{"10.0.1"}, MaximumPaths: 1000},
		&directorv1.RouterConfigRequest{Flavor: 7, OspfInterfaces: []string{"", "eth0/1"}},
	}
}

// FuzzRequests sends arbitrary bytes as the request of a Director call over
// a real gRPC connection to a real server and announcer loop (on fakes). The
// server must never fail or panic on them: whatever decodes is validated, a
// refusal carries a code the caller can act on (never INTERNAL or UNKNOWN)
// with a short, printable message, and a refused call changes nothing.
// Seeds: seedRequests; findings live in testdata/fuzz/FuzzRequests.
//
//	go test ./control -run '^$' -fuzz FuzzRequests -fuzztime 5m
func FuzzRequests(f *testing.F) {
	methods := directorMethods()
	for _, m := range seedRequests() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		for i, md := range methods {
			if md.Input().FullName() == m.ProtoReflect().Descriptor().FullName() {
				f.Add(uint8(i), b)
			}
		}
	}
	h := controltest.Start(f, controltest.Options{})
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		md := methods[int(which)%len(methods)]
		req := newMessage(t, md.Input())
		if proto.Unmarshal(payload, req) != nil {
			return // gRPC refuses it before the server sees it
		}
		before := overridesText(h.Loop.Status().Overrides)
		err := call(h, md, req)
		if err == nil {
			liftAll(t, h)
			return
		}
		checkRefusal(t, md, req, err)
		if after := overridesText(h.Loop.Status().Overrides); before != after {
			t.Errorf("%s refused (%v) but the overrides changed:\nbefore %s\nafter  %s", md.Name(), err, before, after)
		}
	})
}

// newMessage makes an empty message of the given type.
func newMessage(t *testing.T, d protoreflect.MessageDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName())
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}

// call invokes md with req over the harness's connection; a Watch stream is
// opened and closed once the server has answered its header.
func call(h *controltest.Harness, md protoreflect.MethodDescriptor, req proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	method := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
	if !md.IsStreamingServer() {
		mt, _ := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		return h.Conn.Invoke(ctx, method, req, mt.New().Interface())
	}
	stream, err := h.Conn.NewStream(ctx, &directorv1.Director_ServiceDesc.Streams[0], method)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	_, err = stream.Header()
	return err
}

// refusalCodes are the codes a malformed or impossible request may get.
var refusalCodes = map[codes.Code]bool{codes.InvalidArgument: true, codes.NotFound: true,
	codes.FailedPrecondition: true, codes.Unimplemented: true, codes.ResourceExhausted: true}

// checkRefusal asserts that a refusal says what is wrong in a usable way.
func checkRefusal(t *testing.T, md protoreflect.MethodDescriptor, req proto.Message, err error) {
	t.Helper()
	st, ok := status.FromError(err)
	switch {
	case !ok || !refusalCodes[st.Code()]:
		t.Errorf("%s(%v) = %v: want a refusal code, never INTERNAL or UNKNOWN", md.Name(), req, err)
	case st.Message() == "":
		t.Errorf("%s(%v): %s without a message", md.Name(), req, st.Code())
	case len(st.Message()) > 8<<10:
		t.Errorf("%s: a %d-byte message", md.Name(), len(st.Message()))
	case !utf8.ValidString(st.Message()):
		t.Errorf("%s: the message %q is not UTF-8", md.Name(), st.Message())
	}
}

// liftAll removes every override a successful call set, so each input starts
// from the same state.
func liftAll(t *testing.T, h *controltest.Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := h.Loop.Status().Overrides
	var errs []error
	for ref := range o.Drained {
		errs = append(errs, h.Loop.EnableBackend(ctx, ref, announcer.Note{Who: "fuzz"}))
	}
	for ref := range o.Weights {
		errs = append(errs, h.Loop.SetWeight(ctx, ref, -1, announcer.Note{Who: "fuzz"}))
	}
	for vip := range o.DisabledVIPs {
		errs = append(errs, h.Loop.EnableVIP(ctx, vip, announcer.Note{Who: "fuzz"}))
	}
	if o.Director != nil {
		errs = append(errs, h.Loop.UndrainDirector(ctx, announcer.Note{Who: "fuzz"}))
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("lifting the overrides of an accepted call: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); overridesText(h.Loop.Status().Overrides) != overridesText(announcer.Overrides{}); {
		if time.Now().After(deadline) {
			t.Fatalf("overrides still set after lifting them: %s", overridesText(h.Loop.Status().Overrides))
		}
		time.Sleep(time.Millisecond)
	}
}

// overridesText renders overrides for comparison (an empty map and a nil
// one alike, the director drain by value).
func overridesText(o announcer.Overrides) string {
	var director announcer.Note
	if o.Director != nil {
		director = *o.Director
	}
	return fmt.Sprintf("drained %v weights %v vips %v director %t %v", o.Drained, o.Weights, o.DisabledVIPs, o.Director != nil, director)
}
