//go:build !unix

package main

import "os"

// childMaxRSS is unknown on this platform: 0.
func childMaxRSS(*os.ProcessState) int64 { return 0 }
