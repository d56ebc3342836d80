//go:build !linux

package durable

import "os"

// syncFileSystem is nil where there is no syncfs(2): a SyncGroup fsyncs every file.
var syncFileSystem func(*os.File) error
