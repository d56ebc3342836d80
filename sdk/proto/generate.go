// Package proto holds the wire contract of tlsrelay backends. The Go code in backendv1 is
// generated and committed; regenerate it after editing backend.proto with
//
//	cd sdk && go generate ./proto
//
// which needs protoc on PATH (Debian: apt-get install protobuf-compiler). The Go code
// generators are pinned as tool dependencies in sdk/go.mod.
package proto

//go:generate sh -c "protoc --plugin=protoc-gen-go=\"$(go tool -n protoc-gen-go)\" --plugin=protoc-gen-go-grpc=\"$(go tool -n protoc-gen-go-grpc)\" --go_out=backendv1 --go_opt=paths=source_relative --go-grpc_out=backendv1 --go-grpc_opt=paths=source_relative backend.proto"
