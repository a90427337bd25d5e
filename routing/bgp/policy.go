package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Names of the GoBGP policy objects the speaker owns. GoBGP prefix sets hold a
// single address family, hence one set per family.
const (
	prefixSetV4  = "director-vips-v4"
	prefixSetV6  = "director-vips-v6"
	exportPolicy = "director-export"
	importPolicy = "director-import"
	globalPolicy = "global"
)

// installPolicies sets up the two guards of the speaker: import rejects every
// route a peer sends, export accepts only prefixes in the VIP prefix sets
// (filled by updateAllowed) and rejects everything else. GoBGP runs the
// global import policy on locally originated routes too, so import accepts
// those (route type local) and nothing else.
func installPolicies(ctx context.Context, srv *server.BgpServer) error {
	statements := make([]*api.Statement, 0, 2)
	for _, set := range []string{prefixSetV4, prefixSetV6} {
		err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX,
			Name:        set,
		}})
		if err != nil {
			return fmt.Errorf("create prefix set %s: %w", set, err)
		}
		statements = append(statements, &api.Statement{
			Name:       "accept-" + set,
			Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: set}},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		})
	}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: exportPolicy, Statements: statements}}); err != nil {
		return fmt.Errorf("create export policy: %w", err)
	}
	err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: importPolicy, Statements: []*api.Statement{{
		Name:       "accept-local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}})
	if err != nil {
		return fmt.Errorf("create import policy: %w", err)
	}
	err = srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          globalPolicy,
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		Policies:      []*api.Policy{{Name: exportPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
	if err != nil {
		return fmt.Errorf("assign export policy: %w", err)
	}
	err = srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          globalPolicy,
		Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: importPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
	if err != nil {
		return fmt.Errorf("assign reject-all import policy: %w", err)
	}
	return nil
}

// updateAllowed edits the VIP prefix sets in place from have to want. In
// place matters: GoBGP's "replace" swaps in a new set object that the export
// statement, which holds the old one, would never see.
func updateAllowed(ctx context.Context, srv *server.BgpServer, have, want map[netip.Prefix]bool) error {
	var add, del []netip.Prefix
	for p := range want {
		if !have[p] {
			add = append(add, p)
		}
	}
	for p := range have {
		if !want[p] {
			del = append(del, p)
		}
	}
	for _, fam := range []struct {
		set string
		v4  bool
	}{{prefixSetV4, true}, {prefixSetV6, false}} {
		if d := prefixesOf(del, fam.v4); len(d) > 0 {
			err := srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: prefixSet(fam.set, d)})
			if err != nil {
				return fmt.Errorf("remove %d prefixes from %s: %w", len(d), fam.set, err)
			}
		}
		if a := prefixesOf(add, fam.v4); len(a) > 0 {
			err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(fam.set, a)})
			if err != nil {
				return fmt.Errorf("add %d prefixes to %s: %w", len(a), fam.set, err)
			}
		}
	}
	return nil
}

// prefixesOf returns the IPv4 (v4) or IPv6 prefixes of ps, sorted.
func prefixesOf(ps []netip.Prefix, v4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == v4 {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// prefixSet builds a GoBGP prefix set that matches each prefix exactly.
func prefixSet(name string, ps []netip.Prefix) *api.DefinedSet {
	d := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, p := range ps {
		d.Prefixes = append(d.Prefixes, &api.Prefix{
			IpPrefix:      p.String(),
			MaskLengthMin: uint32(p.Bits()),
			MaskLengthMax: uint32(p.Bits()),
		})
	}
	return d
}
