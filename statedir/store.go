package statedir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/atomicfile"
)

// Names in the state directory.
const (
	// FileName is the state file.
	FileName = "state.json"
	// ConfigsDir holds one file per kept configuration, DIGEST.yaml.
	ConfigsDir = "configs"
	// maxStateSize bounds what Restore reads of state.json: the overrides
	// and history are small, and 10,000 owned services are about 600 KiB.
	maxStateSize = 64 << 20
)

// Store reads and writes one state directory. Restore and Save are not safe
// for concurrent use: the daemon has one Writer, whose goroutine is the only
// caller of Save.
type Store struct {
	dir string
	// present are the configuration files known to exist in configs/.
	present map[string]bool
	// listed is set once configs/ was listed into present.
	listed bool
}

// NewStore returns the store of dir. Nothing is read or created until
// Restore or Save.
func NewStore(dir string) *Store {
	return &Store{dir: dir, present: map[string]bool{}}
}

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the state file's path.
func (s *Store) Path() string { return filepath.Join(s.dir, FileName) }

// Restored is what Restore found in the state directory.
type Restored struct {
	// File is the state found; nil when there was none or it could not be
	// used.
	File *File
	// Contents maps the digests of File.Configs to their files; a
	// configuration whose file is missing or damaged is dropped from
	// File.Configs (and listed in Warnings).
	Contents map[string][]byte
	// Lost is set when a state file existed but could not be used: the
	// daemon runs from its configuration alone, and operator overrides are
	// gone.
	Lost bool
	// Err says why the state was lost.
	Err error
	// SetAside is where the unusable file was moved ("" when it could not
	// be moved).
	SetAside string
	// Warnings are smaller losses: configurations dropped from the history.
	Warnings []string
}

// Restore reads the state directory. It never fails: a missing directory
// or file is a first start; a file that cannot be used is set aside and
// reported in Restored.Lost and Err.
func (s *Store) Restore(now time.Time) Restored {
	s.removeTemporaries()
	f, err := s.read()
	if err != nil {
		r := Restored{Lost: true, Err: err}
		if errors.Is(err, errNoFile) {
			return Restored{}
		}
		aside := fmt.Sprintf("%s.bad-%s", s.Path(), now.UTC().Format("20060102T150405.000000000Z"))
		if rerr := os.Rename(s.Path(), aside); rerr != nil {
			r.Err = fmt.Errorf("%w; setting it aside failed too: %v", err, rerr)
		} else {
			r.SetAside = aside
			_ = atomicfile.SyncDir(s.dir)
		}
		return r
	}
	r := Restored{File: f, Contents: map[string][]byte{}}
	kept := f.Configs[:0]
	for _, c := range f.Configs {
		data, err := s.readConfig(c.Digest)
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("configuration version %d dropped from the history: %v", c.Version, err))
			continue
		}
		r.Contents[c.Digest] = data
		kept = append(kept, c)
	}
	f.Configs = kept
	return r
}

// Read returns the state file as it is on disk, without restoring
// anything or setting a bad file aside: nil without error when there is
// none. For tests and tools that inspect a state directory.
func (s *Store) Read() (*File, error) {
	f, err := s.read()
	if errors.Is(err, errNoFile) {
		return nil, nil
	}
	return f, err
}

// removeTemporaries deletes the temporary files a process killed in the
// middle of a write left behind (internal/atomicfile names them
// .NAME.tmpRANDOM); the files they were meant to replace are intact.
func (s *Store) removeTemporaries() {
	for _, pattern := range []string{filepath.Join(s.dir, ".*.tmp*"), filepath.Join(s.dir, ConfigsDir, ".*.tmp*")} {
		names, _ := filepath.Glob(pattern)
		for _, n := range names {
			os.Remove(n)
		}
	}
}

// errNoFile is read's answer when there is no state file: a first start.
var errNoFile = errors.New("no state file")

// read reads and checks state.json.
func (s *Store) read() (*File, error) {
	fh, err := os.Open(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoFile
	}
	if err != nil {
		return nil, fmt.Errorf("read the state file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("read the state file: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxStateSize {
		return nil, fmt.Errorf("the state file %s is not a regular file of at most %d MiB", s.Path(), maxStateSize>>20)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(fh, data); err != nil {
		return nil, fmt.Errorf("read the state file: %w", err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("the state file %s is corrupt or truncated: %w", s.Path(), err)
	}
	if dec.More() {
		return nil, fmt.Errorf("the state file %s is corrupt: data after its end", s.Path())
	}
	switch {
	case f.Format > Format:
		return nil, fmt.Errorf("the state file %s has format %d, written by a newer directord; this one reads format %d and older", s.Path(), f.Format, Format)
	case f.Format < 1:
		return nil, fmt.Errorf("the state file %s is corrupt: format %d", s.Path(), f.Format)
	}
	return &f, nil
}

// configPath is where a configuration's file is kept.
func (s *Store) configPath(digest string) string {
	return filepath.Join(s.dir, ConfigsDir, digest+".yaml")
}

// readConfig reads a kept configuration file and checks it against its
// digest.
func (s *Store) readConfig(digest string) ([]byte, error) {
	if !validDigest(digest) {
		return nil, fmt.Errorf("digest %q is malformed", digest)
	}
	data, err := os.ReadFile(s.configPath(digest))
	if err != nil {
		return nil, err
	}
	if got := config.Digest(data); got != digest {
		return nil, fmt.Errorf("%s is damaged: its digest is %s", s.configPath(digest), got)
	}
	s.present[digest] = true
	return data, nil
}

// validDigest accepts what config.Digest returns: hexadecimal, so it is
// safe as a file name.
func validDigest(d string) bool {
	return d != "" && len(d) <= 64 && strings.Trim(d, "0123456789abcdef") == ""
}

// Save writes f (with this package's Format) as the state file, after writing the configuration files
// it refers to that are not on disk yet (contents maps digests to them),
// and then removes configuration files nothing refers to any more. Each
// file is replaced atomically, so a crash at any point leaves a state file
// whose configurations are all on disk.
func (s *Store) Save(f *File, contents map[string][]byte) error {
	if err := os.MkdirAll(filepath.Join(s.dir, ConfigsDir), 0o700); err != nil {
		return fmt.Errorf("create the state directory: %w", err)
	}
	s.list()
	want := map[string]bool{}
	for _, c := range f.Configs {
		if !validDigest(c.Digest) {
			return fmt.Errorf("configuration version %d: digest %q is malformed", c.Version, c.Digest)
		}
		want[c.Digest] = true
		if s.present[c.Digest] {
			continue
		}
		data, ok := contents[c.Digest]
		if !ok {
			return fmt.Errorf("configuration version %d (%s): no content to save", c.Version, c.Digest)
		}
		if err := atomicfile.Write(s.configPath(c.Digest), data, 0o600); err != nil {
			return err
		}
		s.present[c.Digest] = true
	}
	f.Format = Format
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the state: %w", err)
	}
	if err := atomicfile.Write(s.Path(), append(data, '\n'), 0o600); err != nil {
		return err
	}
	return s.prune(want)
}

// list fills present from configs/ once, so files left by an earlier
// process can be pruned.
func (s *Store) list() {
	if s.listed {
		return
	}
	s.listed = true
	names, _ := filepath.Glob(filepath.Join(s.dir, ConfigsDir, "*.yaml"))
	for _, n := range names {
		if d := strings.TrimSuffix(filepath.Base(n), ".yaml"); validDigest(d) {
			s.present[d] = true
		}
	}
}

// prune removes the configuration files not in want.
func (s *Store) prune(want map[string]bool) error {
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(s.present)) {
		if want[d] {
			continue
		}
		if err := os.Remove(s.configPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(s.present, d)
	}
	return errors.Join(errs...)
}
