// Package proto holds the wire contract of tlsrelay backends: backend.proto, public for
// plugins written in other languages. The Go code generated from it lives under the sdk's
// internal/backendv1 (a Go plugin uses sdk.Serve, never the generated code), committed;
// regenerate it after editing backend.proto with
//
//	cd sdk && go generate ./proto
//
// which needs protoc on PATH (Debian: apt-get install protobuf-compiler). The Go code
// generators are pinned as tool dependencies in sdk/go.mod.
package proto

//go:generate sh -c "protoc --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --plugin=protoc-gen-go-grpc=\"$(go tool -n protoc-gen-go-grpc)\" --go_out=../internal/backendv1 --go_opt=paths=source_relative --go-grpc_out=../internal/backendv1 --go-grpc_opt=paths=source_relative backend.proto"
