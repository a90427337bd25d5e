package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The -o json form is made for jq, not for protojson round trips (docs/api.md,
// "JSON output"): field names are the proto names; every field is present
// (zero values included, unset messages as null); 64-bit integers are JSON
// numbers, not strings; enums are their short lower-case names as in the
// tables ("advertised", "admin-down"); durations are seconds as a number
// (0.0047); timestamps are RFC 3339 strings in UTC. Fields keep their proto
// order.

// printJSON writes m as indented JSON.
func printJSON(w io.Writer, m proto.Message) error {
	return writeJSON(w, m, "  ")
}

// printJSONLine writes m as one line of JSON (for streams).
func printJSONLine(w io.Writer, m proto.Message) error {
	return writeJSON(w, m, "")
}

func writeJSON(w io.Writer, m proto.Message, indent string) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(jsonMessage(m.ProtoReflect())); err != nil {
		return failure{fmt.Errorf("encode JSON: %w", err)}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// object is a JSON object that keeps its keys in order.
type object []member

type member struct {
	key   string
	value any
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// jsonMessage converts a message: Duration and Timestamp to their JSON forms,
// anything else to an object of all its fields (of a oneof, only the set one).
func jsonMessage(m protoreflect.Message) any {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Duration":
		return jsonSeconds(m)
	case "google.protobuf.Timestamp":
		return jsonTime(m)
	}
	fields := m.Descriptor().Fields()
	out := make(object, 0, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !m.Has(fd) {
			continue
		}
		out = append(out, member{string(fd.Name()), jsonField(m, fd)})
	}
	return out
}

// jsonField converts one field: lists to arrays (never null), maps to
// objects with sorted keys, unset messages to null.
func jsonField(m protoreflect.Message, fd protoreflect.FieldDescriptor) any {
	switch {
	case fd.IsList():
		l := m.Get(fd).List()
		out := make([]any, l.Len())
		for i := range out {
			out[i] = jsonValue(fd, l.Get(i))
		}
		return out
	case fd.IsMap():
		mp := m.Get(fd).Map()
		out := make(map[string]any, mp.Len())
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			out[k.String()] = jsonValue(fd.MapValue(), v)
			return true
		})
		return out
	case fd.Message() != nil && !m.Has(fd):
		return nil
	}
	return jsonValue(fd, m.Get(fd))
}

// jsonValue converts a single value of field fd.
func jsonValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return jsonMessage(v.Message())
	case protoreflect.EnumKind:
		return enumName(fd.Enum(), v.Enum())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	}
	return v.Interface()
}

// enumName is an enum value's name without the prefix its values share,
// lower-cased with '-' for '_' ("VIP_STATE_ADVERTISED" is "advertised"):
// the words the status table shows. An unknown number stays a number.
func enumName(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber) any {
	vd := ed.Values().ByNumber(n)
	if vd == nil {
		return json.Number(strconv.Itoa(int(n)))
	}
	return enumWord(string(vd.Name()), enumPrefix(ed))
}

// enumPrefix is the longest prefix, ending in '_', that all of ed's value
// names share ("VIP_STATE_").
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	vals := ed.Values()
	if vals.Len() < 2 {
		return ""
	}
	prefix := string(vals.Get(0).Name())
	for i := 1; i < vals.Len(); i++ {
		name := string(vals.Get(i).Name())
		for !strings.HasPrefix(name, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	return prefix[:strings.LastIndexByte(prefix, '_')+1]
}

// jsonSeconds converts a google.protobuf.Duration to seconds.
func jsonSeconds(m protoreflect.Message) any {
	fields := m.Descriptor().Fields()
	secs := m.Get(fields.ByName("seconds")).Int()
	nanos := m.Get(fields.ByName("nanos")).Int()
	return json.Number(strconv.FormatFloat((time.Duration(secs)*time.Second + time.Duration(nanos)).Seconds(), 'f', -1, 64))
}

// jsonTime converts a google.protobuf.Timestamp to RFC 3339 in UTC.
func jsonTime(m protoreflect.Message) any {
	fields := m.Descriptor().Fields()
	secs := m.Get(fields.ByName("seconds")).Int()
	nanos := m.Get(fields.ByName("nanos")).Int()
	return time.Unix(secs, nanos).UTC().Format(time.RFC3339Nano)
}
