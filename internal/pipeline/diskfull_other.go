//go:build !unix

package pipeline

// mountOf is unknown off Unix.
func mountOf(string) (string, int64) { return "", -1 }
