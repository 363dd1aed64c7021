package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newLoginCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("login: not built yet") },
	}
}
