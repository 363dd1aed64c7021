package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// PLACEHOLDER: replaced by the work on its issue.
func newDownloadCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "download",
		Short: "(not built yet)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("download: not built yet") },
	}
}
