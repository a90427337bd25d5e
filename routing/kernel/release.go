package kernel

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release returns the running kernel's release (uname -r), "" if unknown.
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// KeepsAddressProto reports whether a kernel of this release keeps the
// address protocol mark (IFA_PROTO) that BindAddress relies on: Linux 6.1 and
// later. Distribution kernels older than that (Ubuntu 22.04's 5.15, RHEL 8's
// 4.18, RHEL 9's 5.14) drop it silently. An unparsable release counts as
// old: BindLocalRoute works on every kernel.
func KeepsAddressProto(release string) bool {
	major, minor, ok := parseRelease(release)
	return ok && (major > 6 || major == 6 && minor >= 1)
}

// parseRelease reads "MAJOR.MINOR" from the front of a release string such as
// "6.1.0-56-amd64" or "4.18.0-553.el8_10.x86_64".
func parseRelease(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i]
	}
	minor, err2 := strconv.Atoi(minorDigits)
	return major, minor, err1 == nil && err2 == nil
}
