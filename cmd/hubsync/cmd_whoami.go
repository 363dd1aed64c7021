package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hubsync/hubsync/internal/termsafe"
)

func newWhoamiCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the Hub user behind the token and which token source won",
		Long: `whoami prints the user, their organizations, the token's role and where the token came from, in the
order hubsync looks: --token, $CREDENTIALS_DIRECTORY/hf_token, $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, the OS keyring,
$HF_TOKEN_PATH (else $HF_HOME/token). It never prints the token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWhoami(cmd.Context(), g, defaultAuthEnv(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object (user, fullname, orgs, role, token_name, source, endpoint)")
	return cmd
}

func runWhoami(ctx context.Context, g *globalOptions, a authEnv, asJSON bool) error {
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
	tokenName := ""
	if who.Auth.AccessToken != nil {
		tokenName = who.Auth.AccessToken.DisplayName
	}
	var orgs []string
	for _, o := range who.Orgs {
		orgs = append(orgs, termsafe.String(o.Name))
	}
	role := who.Role()
	if asJSON {
		if orgs == nil {
			orgs = []string{}
		}
		return json.NewEncoder(g.stdout).Encode(map[string]any{
			"user": who.Name, "fullname": who.Fullname, "orgs": orgs, "role": role, "token_name": tokenName,
			"source": tok.String(), "endpoint": g.Endpoint,
		})
	}
	name := termsafe.String(who.Name)
	if who.Fullname != "" && who.Fullname != who.Name {
		name += " (" + termsafe.String(who.Fullname) + ")"
	}
	orgText := "none"
	if len(orgs) > 0 {
		orgText = strings.Join(orgs, ", ")
	}
	if role == "" {
		role = "unknown"
	}
	tokenText := "role " + role
	if tokenName != "" {
		tokenText += fmt.Sprintf(" (%q)", tokenName)
	}
	fmt.Fprintf(g.stdout, "user:     %s\norgs:     %s\ntoken:    %s\nsource:   %s\nendpoint: %s\n",
		name, orgText, tokenText, tok, g.Endpoint)
	return nil
}
