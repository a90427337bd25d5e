package vm

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// cpio "newc" is the only archive format the kernel unpacks as an initramfs.
// Writing it here keeps the host free of a cpio dependency and makes the
// archive reproducible (fixed inode numbers, mtime 0, sorted entries).

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
	modeLink = 0o120000
)

// archiveEntry is one file, folder, symlink or device node of the initramfs.
type archiveEntry struct {
	Name         string // path without leading slash
	Mode         uint32 // type and permission bits
	Data         []byte // file content, or the symlink target
	Major, Minor uint32 // device numbers for character devices
}

// writeCpio writes entries as a newc archive, adding missing parent folders
// and sorting so that a folder always precedes its content.
func writeCpio(w io.Writer, entries []archiveEntry) error {
	byName := map[string]archiveEntry{}
	for _, e := range entries {
		name := strings.Trim(path.Clean("/"+e.Name), "/")
		if name == "" {
			continue
		}
		if _, dup := byName[name]; dup {
			return fmt.Errorf("initramfs: %s added twice", name)
		}
		e.Name = name
		byName[name] = e
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if _, ok := byName[dir]; !ok {
				byName[dir] = archiveEntry{Name: dir, Mode: modeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := uint32(1)
	for _, n := range names {
		e := byName[n]
		if e.Mode&0o170000 == modeDir && e.Data != nil {
			return fmt.Errorf("initramfs: folder %s has content", n)
		}
		if err := writeCpioRecord(w, ino, e); err != nil {
			return err
		}
		ino++
	}
	return writeCpioRecord(w, 0, archiveEntry{Name: "TRAILER!!!"})
}

func writeCpioRecord(w io.Writer, ino uint32, e archiveEntry) error {
	nlink := uint32(1)
	if e.Mode&0o170000 == modeDir {
		nlink = 2
	}
	name := e.Name + "\x00"
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.Major, e.Minor, len(name), 0)
	buf := make([]byte, 0, len(hdr)+len(name)+3+len(e.Data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = pad4(buf)
	buf = append(buf, e.Data...)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write initramfs entry %s: %w", e.Name, err)
	}
	return nil
}

// pad4 pads b with NULs to a multiple of four bytes. Every record starts
// aligned, so padding the record's own length is enough.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
