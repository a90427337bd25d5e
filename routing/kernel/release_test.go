package kernel

import "testing"

func TestKeepsAddressProto(t *testing.T) {
	for release, want := range map[string]bool{
		"6.1.0-56-amd64":           true,
		"6.18.2":                   true,
		"7.0":                      true,
		"6.0.19":                   false,
		"5.15.0-91-generic":        false, // Ubuntu 22.04
		"5.14.0-427.13.1.el9_4":    false, // RHEL 9
		"4.18.0-553.el8_10.x86_64": false, // RHEL 8
		"6.1-rc3":                  true,
		"":                         false,
		"garbage":                  false,
	} {
		if got := KeepsAddressProto(release); got != want {
			t.Errorf("KeepsAddressProto(%q) = %v, want %v", release, got, want)
		}
	}
}
