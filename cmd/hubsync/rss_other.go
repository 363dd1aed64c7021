//go:build !unix

package main

import "os"

// childMaxRSS is unknown on this platform: 0.
func childMaxRSS(*os.ProcessState) int64 { return 0 }

// allocatedBytes is a file's size (its allocated blocks are unknown here).
func allocatedBytes(fi os.FileInfo) int64 { return fi.Size() }
