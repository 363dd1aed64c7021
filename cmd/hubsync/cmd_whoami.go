package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newWhoamiCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the Hub user behind the token and which token source won",
		Long: `whoami prints the user, their organizations, the token's role and where the token came from, in the
order hubsync looks: --token, $CREDENTIALS_DIRECTORY/hf_token, $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, the OS keyring,
$HF_TOKEN_PATH (else $HF_HOME/token). It never prints the token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWhoami(cmd.Context(), g, defaultAuthEnv())
		},
	}
}

func runWhoami(ctx context.Context, g *globalOptions, a authEnv) error {
	tok, err := a.findToken(ctx, g)
	if err != nil {
		return err
	}
	if !tok.Found() {
		return errors.New("not logged in: no token in --token, $CREDENTIALS_DIRECTORY/hf_token, $HF_TOKEN, the keyring or the token file (run `hubsync login`)")
	}
	c, err := newHubClient(g, tok.Value, nil)
	if err != nil {
		return err
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		return fmt.Errorf("whoami with the token from %s: %w", tok, err)
	}
	name := who.Name
	if who.Fullname != "" && who.Fullname != who.Name {
		name += " (" + who.Fullname + ")"
	}
	var orgs []string
	for _, o := range who.Orgs {
		orgs = append(orgs, o.Name)
	}
	orgText := "none"
	if len(orgs) > 0 {
		orgText = strings.Join(orgs, ", ")
	}
	role := who.Role()
	if role == "" {
		role = "unknown"
	}
	tokenText := "role " + role
	if who.Auth.AccessToken != nil && who.Auth.AccessToken.DisplayName != "" {
		tokenText += fmt.Sprintf(" (%q)", who.Auth.AccessToken.DisplayName)
	}
	fmt.Fprintf(g.stdout, "user:     %s\norgs:     %s\ntoken:    %s\nsource:   %s\nendpoint: %s\n",
		name, orgText, tokenText, tok, g.Endpoint)
	return nil
}
