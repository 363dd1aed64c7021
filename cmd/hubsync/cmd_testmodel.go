package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newTestmodelCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "testmodel",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("testmodel: not built yet") },
	}
}
