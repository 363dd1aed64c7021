package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newWatchCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "watch",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("watch: not built yet") },
	}
}
