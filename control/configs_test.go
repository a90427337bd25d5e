package control_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// TestGetConfigShowsKeptFilesWithSecretsRedacted: the running file and older
// kept ones come back as loaded, except secret values.
func TestGetConfigShowsKeptFilesWithSecretsRedacted(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	withSecret := controltest.SecondConfig + "notify:\n  webhooks:\n    - { url: \"https://h.example.net/x\", secret: hunter2 }\n"
	h.SetFile(withSecret)
	if _, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	first, err := h.Client.GetConfig(ctx, &directorv1.GetConfigRequest{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if first.GetContent() != controltest.BaseConfig || first.GetVersion().GetDigest() != config.Digest([]byte(controltest.BaseConfig)) {
		t.Errorf("version 1 = %v\n%s", first.GetVersion(), first.GetContent())
	}
	running, err := h.Client.GetConfig(ctx, &directorv1.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v := running.GetVersion(); v.GetVersion() != 2 || v.GetDigest() != config.Digest([]byte(withSecret)) {
		t.Errorf("running = %v", v)
	}
	if c := running.GetContent(); strings.Contains(c, "hunter2") || !strings.Contains(c, `secret: "<redacted>"`) {
		t.Errorf("running content keeps the secret:\n%s", c)
	}
	_, err = h.Client.GetConfig(ctx, &directorv1.GetConfigRequest{Version: 9})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "use one of 1, 2") {
		t.Errorf("version 9: %v, want NotFound listing the kept versions", err)
	}
}

// TestRollbackDryRunPreviewsAndChangesNothing: the dry run names the version
// it would load and the plan, and the running version stays.
func TestRollbackDryRunPreviewsAndChangesNothing(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	h.SetFile(controltest.SecondConfig)
	if _, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("api removed", func() bool { return kernelWeight(h, controltest.APIKey(), "10.0.2.31:443") < 0 })
	rb, err := h.Client.Rollback(ctx, &directorv1.RollbackRequest{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rb.GetApplied() || rb.GetVersion().GetVersion() != 1 {
		t.Errorf("dry run: applied %t, version %v; want not applied, version 1", rb.GetApplied(), rb.GetVersion())
	}
	var lines []string
	for _, c := range rb.GetChanges() {
		lines = append(lines, c.GetAction().String()+" "+c.GetKind().String()+" "+c.GetSubject())
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"CHANGE_ACTION_ADD CHANGE_KIND_SERVICE tcp/198.18.0.11:443",
		"CHANGE_ACTION_ADD CHANGE_KIND_DESTINATION tcp/198.18.0.11:443 -> 10.0.2.31:443"} {
		if !strings.Contains(joined, want) {
			t.Errorf("plan lacks %q:\n%s", want, joined)
		}
	}
	if v := h.Loop.Status().Config.Version; v != 2 {
		t.Errorf("a dry run changed the running version to %d", v)
	}
	if _, err := h.Client.Rollback(ctx, &directorv1.RollbackRequest{DryRun: true, Version: 2}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("dry run to the running version: %v, want FailedPrecondition", err)
	}
}

// TestActionsOnBehalfOfAUser: a client acting for a user (the console)
// names them; the override, the event log and the audit log record the
// authenticated caller and the user.
func TestActionsOnBehalfOfAUser(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := metadata.AppendToOutgoingContext(ctxT(t), control.OnBehalfOfHeader, "alice")
	stream, err := h.Client.Watch(ctx, &directorv1.WatchRequest{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // the stream has its starting point
		t.Fatal(err)
	}
	if _, err := h.Client.DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: "rack move"}); err != nil {
		t.Fatal(err)
	}
	st, err := h.Client.GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	who := st.GetDrained().GetWho()
	if !strings.HasPrefix(who, "uid=") || !strings.HasSuffix(who, " on behalf of alice") {
		t.Errorf("drain recorded as %q, want the socket's peer on behalf of alice", who)
	}
	next := func(kind directorv1.EventKind) *directorv1.Event {
		t.Helper()
		for {
			ev, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if ev.GetEvent().GetKind() == kind {
				return ev.GetEvent()
			}
		}
	}
	if e := next(directorv1.EventKind_EVENT_KIND_OVERRIDE); e.GetWho() != who || e.GetReason() != "rack move" || e.GetSubject() != "drain director" {
		t.Errorf("event = %v, want who %q", e, who)
	}
	if _, err := h.Client.UndrainDirector(ctx, &directorv1.UndrainDirectorRequest{Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	if e := next(directorv1.EventKind_EVENT_KIND_OVERRIDE); e.GetReason() != "done" || e.GetWho() != who {
		t.Errorf("undrain event = %v, want the reason and who", e)
	}
	h.SetFile(controltest.SecondConfig)
	if _, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.Rollback(ctx, &directorv1.RollbackRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version 2", "rollback to version 1"} {
		if e := next(directorv1.EventKind_EVENT_KIND_RELOAD); e.GetWho() != who ||
			!strings.Contains(e.GetTo()+" "+e.GetReason(), want) {
			t.Errorf("event = %v, want a reload event with %q by %q", e, want, who)
		}
	}
	if logs := h.Logs.String(); !strings.Contains(logs, `caller="`+who+`"`) {
		t.Errorf("the audit log does not name %q:\n%s", who, logs)
	}
	// A long name is cut.
	bad := metadata.AppendToOutgoingContext(ctxT(t), control.OnBehalfOfHeader, "mallory"+strings.Repeat("x", 100))
	if _, err := h.Client.DrainDirector(bad, &directorv1.DrainDirectorRequest{Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	st, _ = h.Client.GetStatus(ctx, &directorv1.GetStatusRequest{})
	if w := st.GetDrained().GetWho(); len(w) > 120 || !strings.HasSuffix(w, "on behalf of mallory"+strings.Repeat("x", 57)+"...") {
		t.Errorf("unclean name recorded: %q", w)
	}
}
