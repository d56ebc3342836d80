// Command wiretext prints the wire contract (proto/backend.proto, as compiled into the
// generated code) as text, one fact a line: each service method with its request and
// response, each message field with its number, type and cardinality, each enum value
// with its number. scripts/check-modules.sh compares it with sdk/api/backend.wire.txt:
// a line gone or changed is a break of the contract every plugin speaks (a field
// renumbered, retyped or removed, a method dropped), which no new plugin or host may
// make; a new line is an addition, recorded deliberately.
//
//	go run ./internal/wiretext      from the sdk module's root
package main

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tlsrelay/tlsrelay/sdk/internal/backendv1"
)

func main() {
	var lines []string
	file := backendv1.File_backend_proto
	services := file.Services()
	for i := range services.Len() {
		s := services.Get(i)
		for j := range s.Methods().Len() {
			m := s.Methods().Get(j)
			lines = append(lines, fmt.Sprintf("rpc %s.%s(%s) returns (%s)%s", s.FullName(), m.Name(), m.Input().FullName(), m.Output().FullName(), streaming(m)))
		}
	}
	var messages func(protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			lines = append(lines, fmt.Sprintf("message %s", m.FullName()))
			for j := range m.Fields().Len() {
				f := m.Fields().Get(j)
				lines = append(lines, fmt.Sprintf("field %s = %d: %s %s", f.FullName(), f.Number(), f.Cardinality(), fieldType(f)))
			}
			for j := range m.ReservedRanges().Len() {
				r := m.ReservedRanges().Get(j)
				lines = append(lines, fmt.Sprintf("reserved %s %d to %d", m.FullName(), r[0], r[1]-1))
			}
			enums(&lines, m.Enums())
			messages(m.Messages())
		}
	}
	messages(file.Messages())
	enums(&lines, file.Enums())
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}

func enums(lines *[]string, es protoreflect.EnumDescriptors) {
	for i := range es.Len() {
		e := es.Get(i)
		for j := range e.Values().Len() {
			v := e.Values().Get(j)
			*lines = append(*lines, fmt.Sprintf("enum %s = %d", v.FullName(), v.Number()))
		}
	}
}

func fieldType(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return fmt.Sprintf("map<%s, %s>", fieldType(f.MapKey()), fieldType(f.MapValue()))
	case f.Message() != nil:
		return string(f.Message().FullName())
	case f.Enum() != nil:
		return string(f.Enum().FullName())
	}
	return f.Kind().String()
}

func streaming(m protoreflect.MethodDescriptor) string {
	switch {
	case m.IsStreamingClient() && m.IsStreamingServer():
		return " (bidirectional stream)"
	case m.IsStreamingClient():
		return " (client stream)"
	case m.IsStreamingServer():
		return " (server stream)"
	}
	return ""
}
