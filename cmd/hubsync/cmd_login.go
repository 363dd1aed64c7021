package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/termsafe"
)

// authEnv is where credentials are looked up and stored; tests replace the keyring and the environment.
type authEnv struct {
	getenv  hub.Getenv
	keyring hub.Keyring
}

// defaultAuthEnv is the process environment and the OS keyring.
func defaultAuthEnv() authEnv {
	return authEnv{getenv: os.Getenv, keyring: hub.SystemKeyring{Getenv: os.Getenv}}
}

// findToken looks the token up in the documented order (hub.FindToken).
func (a authEnv) findToken(ctx context.Context, g *globalOptions) (hub.Token, error) {
	return hub.FindToken(ctx, hub.TokenLookup{
		Explicit: g.Token, Getenv: a.getenv, Keyring: a.keyring, Endpoint: g.Endpoint, Logger: g.log,
	})
}

// hubsyncVersion is the module version for the User-Agent ("dev" for local builds).
func hubsyncVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newHubClient builds a client for the global endpoint with token (may be empty: anonymous).
func newHubClient(g *globalOptions, token string, mod func(*hub.Options)) (*hub.Client, error) {
	o := hub.Options{Endpoint: g.Endpoint, Token: token, Version: hubsyncVersion(), Logger: g.log, StallTimeout: g.StallTimeout,
		Xet: g.xetMode, XetCacheDir: hub.XetCacheDir(nil)}
	if mod != nil {
		mod(&o)
	}
	return hub.New(o)
}

// loginOptions are the flags of `hubsync login`.
type loginOptions struct {
	TokenStdin      bool
	InsecureStorage bool
	Force           bool
}

// AddFlags registers the flags.
func (o *loginOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.TokenStdin, "token-stdin", false, "read the token from standard input instead of a hidden prompt")
	f.BoolVar(&o.InsecureStorage, "insecure-storage", false,
		"when no keyring works, store the token in plain text in $HF_TOKEN_PATH (else $HF_HOME/token), mode 0600")
	f.BoolVar(&o.Force, "force", false, "replace a different token already stored (in the keyring or the token file)")
}

func newLoginCommand(g *globalOptions) *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Check a Hub token and store it in the OS keyring",
		Long: `login reads a Hub token (a hidden prompt on a terminal, --token-stdin, or the global --token), checks it
with whoami, and stores it in the OS keyring (service "hubsync", user = the endpoint's host). When no keyring is
usable it refuses, unless --insecure-storage allows writing the token in plain text to $HF_TOKEN_PATH (else
$HF_HOME/token), the file huggingface_hub also reads, with mode 0600 (a missing directory is created 0700; an
existing one keeps its mode). A different token already stored is never replaced silently: login names its user
and needs --force. It says where the token went.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogin(cmd.Context(), g, o, defaultAuthEnv())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// maxTokenInput bounds the token read from stdin.
const maxTokenInput = 64 << 10

// readToken gets the token from --token, --token-stdin or a hidden prompt.
func readToken(g *globalOptions, o *loginOptions) (string, error) {
	if g.Token != "" {
		if o.TokenStdin {
			return "", usagef("--token and --token-stdin both given")
		}
		return strings.TrimSpace(g.Token), nil
	}
	if o.TokenStdin {
		line, err := bufio.NewReader(io.LimitReader(g.stdin, maxTokenInput)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the token from stdin: %w", err)
		}
		return strings.TrimSpace(line), nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("standard input is not a terminal: pass the token with --token-stdin")
	}
	fmt.Fprint(g.stderr, "Hub token (input hidden): ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(g.stderr)
	if err != nil {
		return "", fmt.Errorf("reading the token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func runLogin(ctx context.Context, g *globalOptions, o *loginOptions, a authEnv) error {
	token, err := readToken(g, o)
	if err != nil {
		return err
	}
	if token == "" {
		return usagef("empty token")
	}
	if strings.HasPrefix(token, "api_org") {
		return errors.New("this is an organization API token; log in with a personal user access token")
	}
	c, err := newHubClient(g, token, nil)
	if err != nil {
		return err
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		return fmt.Errorf("checking the token with %s: %w", g.Endpoint, err)
	}
	user := hub.KeyringUser(g.Endpoint)
	where := ""
	kerr := error(errors.New("no keyring"))
	if a.keyring != nil {
		// Look before writing: a different token already there is replaced only with --force.
		old, gerr := a.keyring.Get(ctx, hub.KeyringService, user)
		switch {
		case gerr == nil:
			if err := checkReplace(ctx, g, o, old, token, fmt.Sprintf("the OS keyring (%s/%s)", hub.KeyringService, user)); err != nil {
				return err
			}
			kerr = a.keyring.Set(ctx, hub.KeyringService, user, token)
		case errors.Is(gerr, hub.ErrKeyringNotFound):
			kerr = a.keyring.Set(ctx, hub.KeyringService, user, token)
		default:
			kerr = gerr
		}
	}
	switch {
	case kerr == nil:
		where = fmt.Sprintf("the OS keyring (%s/%s)", hub.KeyringService, user)
	case o.InsecureStorage:
		path := hub.TokenFilePath(a.getenv)
		if old, err := hub.ReadTokenFile(path); err != nil {
			return err
		} else if err := checkReplace(ctx, g, o, old, token, path); err != nil {
			return err
		}
		if err := hub.WriteTokenFile(path, token); err != nil {
			return fmt.Errorf("no usable keyring (%v), and writing %s failed: %w", kerr, path, err)
		}
		fmt.Fprintf(g.stderr, "warning: no usable keyring (%v); the token is stored in plain text in %s (mode 0600)\n", kerr, path)
		where = path
	default:
		return fmt.Errorf("the token is valid (%s) but no keyring is usable (%v); not storing it. "+
			"Rerun with --insecure-storage to store it in plain text in %s, or pass it with $HF_TOKEN or "+
			"$CREDENTIALS_DIRECTORY/hf_token instead", who.Name, kerr, hub.TokenFilePath(a.getenv))
	}
	role := who.Role()
	if role == "" {
		role = "unknown"
	}
	fmt.Fprintf(g.stdout, "Logged in to %s as %s (token role: %s); token stored in %s\n", g.Endpoint, termsafe.String(who.Name), role, where)
	// Say when a higher-priority source will keep shadowing what was just stored.
	if a.getenv != nil {
		for _, v := range []string{"CREDENTIALS_DIRECTORY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
			if strings.TrimSpace(a.getenv(v)) != "" {
				fmt.Fprintf(g.stderr, "note: $%s is set and takes precedence over the stored token\n", v)
			}
		}
	}
	return nil
}

// checkReplace refuses to overwrite a different token stored in where unless --force is given. The stored
// token is named by its whoami user, never by its value.
func checkReplace(ctx context.Context, g *globalOptions, o *loginOptions, old, token, where string) error {
	if old == "" || old == token {
		return nil
	}
	owner := "a token " + g.Endpoint + " does not accept"
	if c, err := newHubClient(g, old, nil); err == nil {
		if who, err := c.WhoAmI(ctx); err == nil {
			owner = "the token of " + termsafe.String(who.Name)
		}
		c.CloseIdleConnections()
	}
	if !o.Force {
		return fmt.Errorf("%s already holds a different token (%s); rerun with --force to replace it", where, owner)
	}
	fmt.Fprintf(g.stderr, "replacing %s in %s (--force)\n", owner, where)
	return nil
}
