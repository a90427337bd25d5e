package vm

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cpioRecord is one parsed newc record.
type cpioRecord struct {
	Name         string
	Mode         uint32
	Data         string
	Major, Minor uint32
}

// readCpio parses a newc archive strictly: magic, hex fields, 4-byte
// alignment of names and data, and the trailer.
func readCpio(t *testing.T, b []byte) []cpioRecord {
	t.Helper()
	var out []cpioRecord
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("record at %d is not 4-byte aligned", off)
		}
		if len(b) < off+110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesz := field(1), field(6), field(9), field(10), field(11)
		nameStart := off + 110
		name := string(b[nameStart : nameStart+int(namesz)-1])
		if b[nameStart+int(namesz)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataStart := (nameStart + int(namesz) + 3) &^ 3
		data := string(b[dataStart : dataStart+int(size)])
		off = (dataStart + int(size) + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioRecord{Name: name, Mode: mode, Data: data, Major: rmaj, Minor: rmin})
	}
}

func TestWriteCpioRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	err := writeCpio(&buf, []archiveEntry{
		{Name: "/init", Mode: modeFile | 0o755, Data: []byte("#!/bin/sh\n")},
		{Name: "lib/modules/kernel/net/x.ko", Mode: modeFile | 0o644, Data: []byte("12345")},
		{Name: "dev/console", Mode: modeChar | 0o600, Major: 5, Minor: 1},
		{Name: "bin/sh", Mode: modeLink | 0o777, Data: []byte("busybox")},
		{Name: "tmp", Mode: modeDir | 0o1777},
	})
	if err != nil {
		t.Fatalf("writeCpio: %v", err)
	}
	dir := func(n string) cpioRecord { return cpioRecord{Name: n, Mode: modeDir | 0o755} }
	want := []cpioRecord{
		dir("bin"),
		{Name: "bin/sh", Mode: modeLink | 0o777, Data: "busybox"},
		dir("dev"),
		{Name: "dev/console", Mode: modeChar | 0o600, Major: 5, Minor: 1},
		{Name: "init", Mode: modeFile | 0o755, Data: "#!/bin/sh\n"},
		dir("lib"), dir("lib/modules"), dir("lib/modules/kernel"), dir("lib/modules/kernel/net"),
		{Name: "lib/modules/kernel/net/x.ko", Mode: modeFile | 0o644, Data: "12345"},
		{Name: "tmp", Mode: modeDir | 0o1777},
	}
	if diff := cmp.Diff(want, readCpio(t, buf.Bytes())); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
}

func TestWriteCpioAlignsEveryNameLength(t *testing.T) {
	var entries []archiveEntry
	for n := 1; n <= 8; n++ {
		entries = append(entries, archiveEntry{
			Name: strings.Repeat("n", n), Mode: modeFile | 0o644, Data: []byte(strings.Repeat("d", n)),
		})
	}
	var buf bytes.Buffer
	if err := writeCpio(&buf, entries); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	if len(got) != 8 {
		t.Fatalf("got %d records, want 8", len(got))
	}
	for _, r := range got {
		if len(r.Name) != len(r.Data) {
			t.Errorf("record %q has data %q: misaligned read", r.Name, r.Data)
		}
	}
}

func TestWriteCpioRejectsDuplicatesAndFolderContent(t *testing.T) {
	tests := []struct {
		name    string
		entries []archiveEntry
	}{
		{"duplicate", []archiveEntry{{Name: "a", Mode: modeFile}, {Name: "/a", Mode: modeFile}}},
		{"folder with data", []archiveEntry{{Name: "d", Mode: modeDir | 0o755, Data: []byte("x")}}},
	}
	for _, tc := range tests {
		if err := writeCpio(&bytes.Buffer{}, tc.entries); err == nil {
			t.Errorf("%s: writeCpio succeeded, want an error", tc.name)
		}
	}
}
