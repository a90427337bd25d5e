package control

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control/rules"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// parseBackendRef checks a BackendRef against the running status so a bad
// request is refused with a message that shows a correct value.
func parseBackendRef(ref *directorv1.BackendRef, st *announcer.Status) (announcer.BackendRef, error) {
	return parseBackendRefOr(ref, st, func(announcer.BackendRef) bool { return false })
}

// parseBackendRefOr is parseBackendRef for calls that lift an override: a ref
// for which overridden is true is accepted even when the running
// configuration no longer has the backend, so a drain or weight set before a
// reload removed the backend can still be cleared.
func parseBackendRefOr(ref *directorv1.BackendRef, st *announcer.Status, overridden func(announcer.BackendRef) bool) (announcer.BackendRef, error) {
	if ref == nil || ref.GetAddress() == "" {
		return announcer.BackendRef{}, invalid("backend.address is required: give the backend's IP address as in the configuration, e.g. %s", exampleBackend(st))
	}
	addr, err := netip.ParseAddr(strings.TrimSpace(ref.GetAddress()))
	if err != nil || addr.Zone() != "" {
		return announcer.BackendRef{}, invalid("backend address %q is not an IP address: use the address as in the configuration, e.g. %s", ref.GetAddress(), exampleBackend(st))
	}
	if ref.GetPort() > 65535 {
		return announcer.BackendRef{}, invalid("backend port %d is out of range: use 1 to 65535, or 0 for every port of the backend", ref.GetPort())
	}
	out := announcer.BackendRef{Service: ref.GetService(), Addr: addr.Unmap(), Port: uint16(ref.GetPort())}
	if overridden(out) {
		return out, nil
	}
	if out.Service != "" {
		if _, ok := st.Service(out.Service); !ok {
			return announcer.BackendRef{}, notFound("no service named %q: use one of %s, or omit the service to match every service", out.Service, serviceNames(st))
		}
	}
	if len(matchBackends(st, out)) == 0 {
		return announcer.BackendRef{}, notFound("no backend matches %s in the running configuration: check the address and port with `directorctl status`", out)
	}
	return out, nil
}

// parseVIP checks a VIP address against the running status.
func parseVIP(s string, st *announcer.Status) (netip.Addr, error) {
	return parseVIPOr(s, st, false)
}

// parseVIPOr is parseVIP for EnableVIP: a VIP that is disabled is accepted
// even when a reload removed it, so its override can still be lifted.
func parseVIPOr(s string, st *announcer.Status, lifting bool) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, invalid("vip is required: give the VIP address, e.g. %s", exampleVIP(st))
	}
	vip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || vip.Zone() != "" {
		return netip.Addr{}, invalid("vip %q is not an IP address: use the VIP as in the configuration, e.g. %s", s, exampleVIP(st))
	}
	vip = vip.Unmap()
	if _, disabled := st.Overrides.DisabledVIPs[vip]; lifting && disabled {
		return vip, nil
	}
	if _, ok := st.VIP(vip); !ok {
		return netip.Addr{}, notFound("VIP %s is not in the running configuration: configured VIPs are %s", vip, vipList(st))
	}
	return vip, nil
}

// parseNote checks an override's reason and expiry (package rules, the
// same rules directorctl checks its flags with) and builds its note.
func parseNote(reason string, expiresAfter *durationpb.Duration, who string, now time.Time) (announcer.Note, error) {
	if err := checkReason(reason); err != nil {
		return announcer.Note{}, err
	}
	n := announcer.Note{Reason: reason, Who: who}
	if expiresAfter != nil {
		if err := expiresAfter.CheckValid(); err != nil {
			return announcer.Note{}, invalid("expires_after is not a valid duration: %v", err)
		}
		d := expiresAfter.AsDuration()
		if err := rules.CheckExpiry(d); err != nil {
			return announcer.Note{}, invalid("expires_after: %v", err)
		}
		n.Expires = now.Add(d)
	}
	return n, nil
}

// checkReason refuses reasons that would garble logs and status tables.
func checkReason(reason string) error {
	if err := rules.CheckReason(reason); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// matchBackends lists the backends of st that ref selects, as
// "service/addr:port", in status order.
func matchBackends(st *announcer.Status, ref announcer.BackendRef) []string {
	var out []string
	for _, s := range st.Services {
		if ref.Service != "" && s.Name != ref.Service {
			continue
		}
		for _, b := range s.Backends {
			if b.Address == ref.Addr && (ref.Port == 0 || b.Port == ref.Port) {
				out = append(out, s.Name+"/"+netip.AddrPortFrom(b.Address, b.Port).String())
			}
		}
	}
	return out
}

// exampleBackend is a configured backend address to quote in messages.
func exampleBackend(st *announcer.Status) string {
	for _, s := range st.Services {
		for _, b := range s.Backends {
			return b.Address.String()
		}
	}
	return "10.0.2.21"
}

// exampleVIP is a configured VIP to quote in messages.
func exampleVIP(st *announcer.Status) string {
	if len(st.VIPs) > 0 {
		return st.VIPs[0].VIP.String()
	}
	return "198.18.0.10"
}

// serviceNames lists the configured service names for messages (at most ten).
func serviceNames(st *announcer.Status) string {
	names := make([]string, 0, len(st.Services))
	for _, s := range st.Services {
		names = append(names, s.Name)
	}
	return shortList(names)
}

// vipList lists the configured VIPs for messages (at most ten).
func vipList(st *announcer.Status) string {
	vips := make([]string, 0, len(st.VIPs))
	for _, v := range st.VIPs {
		vips = append(vips, v.VIP.String())
	}
	return shortList(vips)
}

func shortList(items []string) string {
	if len(items) == 0 {
		return "(none)"
	}
	if len(items) > 10 {
		return strings.Join(slices.Clip(items[:10]), ", ") + fmt.Sprintf(" and %d more", len(items)-10)
	}
	return strings.Join(items, ", ")
}
