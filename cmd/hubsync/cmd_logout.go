package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newLogoutCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("logout: not built yet") },
	}
}
