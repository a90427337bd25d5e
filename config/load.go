package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Bounds of what Load reads and Parse parses. The largest configuration the
// project plans for, 10,000 services of 5 backends each, is 3.3 MiB and about
// 370,000 values (BenchmarkParseLarge); the YAML parser needs up to about 200
// bytes of memory per value, so these bounds keep the worst file Parse
// accepts to a few hundred megabytes and seconds (TestParseBounds) instead of
// gigabytes and minutes.
const (
	// maxFileSize is the largest file Load reads.
	maxFileSize = 8 << 20
	// maxValues bounds the values (scalars, lists and mappings, as estimated
	// by countValues) a file may hold.
	maxValues = 1_000_000
	// readTimeout bounds how long Load waits for the file's bytes, so a
	// file on a hung network filesystem cannot stall a reload forever.
	readTimeout = 10 * time.Second
)

// Load reads and validates the configuration file at path. A read failure is
// returned wrapped; a file with problems returns Errors listing all of them.
func Load(path string) (*Config, error) {
	return LoadContext(context.Background(), path)
}

// LoadContext is Load that gives up reading when ctx ends or after
// readTimeout. Only regular files are read: a FIFO, a device or a directory
// is refused at once instead of blocking the caller.
func LoadContext(ctx context.Context, path string) (*Config, error) {
	data, err := readFile(ctx, path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	c.Source = path
	return c, nil
}

// readFile reads a regular file of at most maxFileSize bytes. The file is
// opened non-blocking, so opening a FIFO does not wait for a writer, and
// checked to be a regular file before anything is read. The read itself runs
// in a goroutine so that the caller returns at the deadline even when the
// filesystem does not (the goroutine then finishes whenever the read does).
func readFile(ctx context.Context, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("read configuration %s: it is %s, not a regular file: point the daemon at the YAML file itself", path, fileKind(fi.Mode()))
	}
	if fi.Size() > maxFileSize {
		f.Close()
		return nil, tooLarge(path)
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("read configuration %s: %w", path, r.err)
		}
		if len(r.data) > maxFileSize {
			return nil, tooLarge(path)
		}
		return r.data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("read configuration %s: gave up waiting for the file's bytes (%w; the limit is %s): is it on a hung network filesystem?", path, ctx.Err(), readTimeout)
	}
}

func tooLarge(path string) error {
	return fmt.Errorf("read configuration %s: larger than %d MiB; a configuration of 10,000 services is about 3 MiB: is this the right file?", path, maxFileSize>>20)
}

// fileKind names a file type for messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// Parse validates a configuration held in memory; name is used in error
// messages (usually the file name). The error, if any, is Errors: every
// validation problem, or the one syntax error that stopped the parser.
func Parse(name string, data []byte) (*Config, error) {
	if e := checkBounds(name, data); e != nil {
		return nil, Errors{e}
	}
	root, perr := parseYAML(name, data)
	if perr != nil {
		return nil, Errors{perr}
	}
	r := newReport(name)
	var rc rawConfig
	if !decodeRoot(r, root, &rc) {
		return nil, r.result()
	}
	c := validate(r, &rc)
	if r.failedLoad() {
		return nil, r.result()
	}
	c.Digest = Digest(data)
	c.Content = bytes.Clone(data)
	if len(r.warns) > 0 {
		c.Warnings = r.warns.sorted()
	}
	return c, nil
}

// checkBounds refuses data that is too large to be a configuration before
// the YAML parser spends memory on it.
func checkBounds(name string, data []byte) *Error {
	if len(data) > maxFileSize {
		return &Error{File: name, Path: PathDocument, Msg: fmt.Sprintf("%d bytes is larger than the %d MiB a configuration may have", len(data), maxFileSize>>20),
			Hint: "a configuration of 10,000 services is about 3 MiB: is this the right file?"}
	}
	if n := countValues(data); n > maxValues {
		return &Error{File: name, Path: PathDocument, Msg: fmt.Sprintf("the file holds about %d values, more than the %d a configuration may have", n, maxValues),
			Hint: "10,000 services of 5 backends are about 370,000 values: is this the right file?"}
	}
	return nil
}

// countValues estimates the number of YAML values in data from the
// indicators that start or separate them: every block list item ("- "),
// mapping key (": "), flow collection ('[', '{') and flow separator (',').
// Each value but the document's root needs one of them, and each of them
// makes at most two values (a key and its value), so the estimate bounds
// the parser's work without parsing; characters inside quoted strings and
// comments only make it larger.
func countValues(data []byte) int {
	n := 0
	for i, c := range data {
		switch c {
		case ',', '[', '{':
			n++
		case '-', ':':
			if i+1 == len(data) {
				n++
				continue
			}
			switch data[i+1] {
			case ' ', '\t', '\n', '\r':
				n++
			}
		}
	}
	return n
}

// Digest returns the short SHA-256 of a configuration file's bytes, the
// version identifier of Config.Digest.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// parseYAML parses data into a node tree and returns the root node of its
// single document: parsePlain's tree when the file keeps to the YAML it
// covers, yaml.v3's otherwise.
func parseYAML(name string, data []byte) (root *yaml.Node, e *Error) {
	// The parser reports problems by panicking internally and recovering its
	// own error type; anything else it panics with would escape. A broken
	// configuration must never take the daemon down, so contain it here.
	defer func() {
		if p := recover(); p != nil {
			root, e = nil, &Error{File: name, Path: PathSyntax, Msg: fmt.Sprintf("the YAML parser failed: %v", p),
				Hint: "the file is probably malformed; please also report this input as a bug"}
		}
	}()
	if root, ok := parsePlain(data); ok {
		return root, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, emptyError(name)
		}
		return nil, syntaxError(name, data, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, emptyError(name)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &Error{File: name, Line: next.Line, Path: PathDocument, Msg: "the file holds more than one YAML document",
			Hint: "a configuration is one document; remove the second '---'"}
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(name, data, err)
	}
	return doc.Content[0], nil
}

func emptyError(name string) *Error {
	return &Error{File: name, Path: PathDocument, Msg: "the file holds no configuration",
		Hint: "start from examples/directord.yaml"}
}
