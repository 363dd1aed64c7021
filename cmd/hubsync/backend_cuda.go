//go:build cuda

package main

import "github.com/hubsync/hubsync/merge/cuda"

// A -tags cuda build offers the CUDA backend to merge, push --merged, watch and bench merge.
func init() { mergeBackends = append(mergeBackends, cuda.Provider()) }
