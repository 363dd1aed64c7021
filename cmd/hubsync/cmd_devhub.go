package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newDevhubCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "devhub",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("devhub: not built yet") },
	}
}
