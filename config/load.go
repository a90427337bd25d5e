package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a configuration of 10,000 services is a
// few megabytes; anything far larger is the wrong file.
const maxFileSize = 64 << 20

// Load reads and validates the configuration file at path. A read failure is
// returned wrapped; a file with problems returns Errors listing all of them.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read configuration %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("read configuration %s: larger than %d MiB; is this the right file?", path, maxFileSize>>20)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	c.Source = path
	return c, nil
}

// Parse validates a configuration held in memory; name is used in error
// messages (usually the file name). The error, if any, is Errors: every
// validation problem, or the one syntax error that stopped the parser.
func Parse(name string, data []byte) (*Config, error) {
	root, perr := parseYAML(name, data)
	if perr != nil {
		return nil, Errors{perr}
	}
	r := newReport(name)
	var rc rawConfig
	decodeRoot(r, root, &rc)
	if root.Kind != yaml.MappingNode {
		return nil, r.errs.sorted()
	}
	c := validate(r, &rc)
	if len(r.errs) > 0 {
		return nil, r.errs.sorted()
	}
	c.Digest = Digest(data)
	if len(r.warns) > 0 {
		c.Warnings = r.warns.sorted()
	}
	return c, nil
}

// Digest returns the short SHA-256 of a configuration file's bytes, the
// version identifier of Config.Digest.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// parseYAML parses data into a node tree and returns the root node of its
// single document.
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

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find
// expected key") into an Error with its line.
func syntaxError(name string, data []byte, err error) *Error {
	e := &Error{File: name, Path: PathSyntax, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Msg, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if n, cerr := strconv.Atoi(num); cerr == nil && n > 0 {
				e.Line, e.Msg = n, msg
			}
		}
	}
	// The parser does not say where an unknown alias is; the first use is.
	if rest, ok := strings.CutPrefix(e.Msg, "unknown anchor '"); ok && e.Line == 0 {
		if anchor, _, ok := strings.Cut(rest, "'"); ok && anchor != "" {
			for i, l := range strings.Split(string(data), "\n") {
				if strings.Contains(l, "*"+anchor) {
					e.Line = i + 1
					break
				}
			}
			e.Hint = "define the anchor (&" + anchor + ") before its first use"
		}
	}
	if strings.Contains(e.Msg, "found character that cannot start any token") {
		e.Hint = "YAML does not allow tabs for indentation; indent with spaces"
	}
	return e
}
