package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newWhoamiCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("whoami: not built yet") },
	}
}
