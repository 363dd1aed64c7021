package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubsync/hubsync/hub"
)

// logoutOptions are the flags of `hubsync logout`.
type logoutOptions struct {
	InsecureStorage bool
}

// AddFlags registers the flags.
func (o *logoutOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.InsecureStorage, "insecure-storage", false, "also delete the plain-text token file ($HF_TOKEN_PATH, else $HF_HOME/token)")
}

func newLogoutCommand(g *globalOptions) *cobra.Command {
	o := &logoutOptions{}
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "Remove the stored Hub token from the keyring",
		Long: `logout removes the token stored for the endpoint from the OS keyring. The plain-text token file
($HF_TOKEN_PATH, else $HF_HOME/token, shared with huggingface_hub) is deleted only with --insecure-storage;
otherwise logout says where a token is still found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogout(cmd.Context(), g, o, defaultAuthEnv())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runLogout(ctx context.Context, g *globalOptions, o *logoutOptions, a authEnv) error {
	user := hub.KeyringUser(g.Endpoint)
	var kerr error = hub.ErrKeyringUnavailable
	if a.keyring != nil {
		kerr = a.keyring.Delete(ctx, hub.KeyringService, user)
	}
	path := hub.TokenFilePath(a.getenv)
	keyringUsable := kerr == nil || errors.Is(kerr, hub.ErrKeyringNotFound)
	switch {
	case kerr == nil:
		fmt.Fprintf(g.stdout, "Removed the token for %s from the OS keyring\n", user)
	case errors.Is(kerr, hub.ErrKeyringNotFound):
		fmt.Fprintf(g.stdout, "No token for %s in the OS keyring\n", user)
	}
	if o.InsecureStorage {
		removed, err := hub.RemoveTokenFile(path)
		if err != nil {
			return err
		}
		switch {
		case removed:
			fmt.Fprintf(g.stdout, "Removed the token file %s\n", path)
		case !keyringUsable:
			fmt.Fprintf(g.stdout, "Not logged in: no usable OS keyring and no token file %s\n", path)
		}
	} else if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		if !keyringUsable {
			// One message: without a keyring the token file is the only place a login can have gone.
			return fmt.Errorf("no usable OS keyring (%v); the token stays in %s: "+
				"delete it with `hubsync logout --insecure-storage`", kerr, path)
		}
		fmt.Fprintf(g.stderr, "note: a token is still stored in %s (huggingface_hub's token file); "+
			"delete it with `hubsync logout --insecure-storage`\n", path)
	} else if !keyringUsable {
		fmt.Fprintf(g.stdout, "Not logged in: no usable OS keyring (%v) and no token file %s\n", kerr, path)
	}
	for _, v := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if a.getenv != nil && strings.TrimSpace(a.getenv(v)) != "" {
			fmt.Fprintf(g.stderr, "note: $%s is still set in the environment\n", v)
		}
	}
	if a.getenv != nil && a.getenv("CREDENTIALS_DIRECTORY") != "" {
		fmt.Fprintln(g.stderr, "note: $CREDENTIALS_DIRECTORY is set; a hf_token credential there still applies")
	}
	return nil
}
