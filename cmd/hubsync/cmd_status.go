package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newStatusCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("status: not built yet") },
	}
}
