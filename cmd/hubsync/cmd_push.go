package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newPushCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "push",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("push: not built yet") },
	}
}
