package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/termsafe"
)

// Exit codes, as DESIGN.md fixes them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// globalOptions are the flags every command shares, plus the process's standard streams.
type globalOptions struct {
	Endpoint  string // --endpoint, else $HF_ENDPOINT, else https://huggingface.co
	Token     string // --token (highest-priority token source)
	LogFormat string // --log-format: auto, console or json
	Verbose   int    // -v, repeatable
	// StallTimeout (--stall-timeout) aborts and retries a transfer that moved no byte for that long.
	StallTimeout time.Duration
	// Xet (--xet auto|on|off) says whether uploads use the Xet transfer; HF_HUB_DISABLE_XET=1 forces off.
	Xet     string
	xetMode hub.XetMode // Xet parsed by setup

	quiet bool // a command's --quiet: no progress bars, no logs below warnings

	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    zerolog.Logger
}

// usageError marks a command-line mistake; it exits with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// An error may quote server text; whatever hub did not escape already is escaped here.
	fmt.Fprintf(stderr, "hubsync: %s\n", termsafe.String(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra reports an unknown subcommand as a plain error; it is a usage error like any other.
		return exitUsage
	}
	return exitFailure
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "hubsync",
		Short: "Merge LoRA checkpoints and publish them to the Hugging Face Hub",
		Long: `hubsync merges LoRA/QLoRA adapters into their base models (bitsandbytes 4-bit or 16-bit),
shards the result as safetensors and publishes it to the Hugging Face Hub with parallel,
resumable uploads, once (push, merge) or as a daemon that watches a trainer's output (watch).`,
		Version:       hubsyncVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.Endpoint, "endpoint", "", "Hub endpoint (default $HF_ENDPOINT, else https://huggingface.co)")
	pf.StringVar(&g.Token, "token", "", "Hub token (default: $CREDENTIALS_DIRECTORY/hf_token, $HF_TOKEN, keyring, $HF_HOME/token)")
	pf.StringVar(&g.LogFormat, "log-format", "auto", "log format: auto (console on a terminal, else json), console or json")
	pf.CountVarP(&g.Verbose, "verbose", "v", "more log output (-v debug, -vv trace)")
	pf.DurationVar(&g.StallTimeout, "stall-timeout", hub.DefaultStallTimeout,
		"abort and retry a request, download or upload part that moved no byte for this long")
	pf.StringVar(&g.Xet, "xet", "auto",
		"Xet uploads: auto (when the Hub chooses xet, else LFS), on (fail without it) or off; HF_HUB_DISABLE_XET=1 means off")

	root.AddCommand(
		newLoginCommand(g),
		newLogoutCommand(g),
		newWhoamiCommand(g),
		newMergeCommand(g),
		newExportCommand(g),
		newPushCommand(g),
		newUploadCommand(g),
		newDownloadCommand(g),
		newWatchCommand(g),
		newStatusCommand(g),
		newRetryCommand(g),
		newDevhubCommand(g),
		newDemoCommand(g),
		newTestmodelCommand(g),
		newBenchCommand(g),
		newVersionCommand(g),
	)
	root.SetVersionTemplate("hubsync {{.Version}}\n")
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the hubsync version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "hubsync %s\n", hubsyncVersion())
			return nil
		},
	}
}

// wrapArgs makes positional-argument errors usage errors (exit 2), recursively.
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// setup resolves defaults that depend on the environment and builds the logger.
func (g *globalOptions) setup() error {
	if g.StallTimeout <= 0 {
		return usagef("--stall-timeout must be positive, not %s", g.StallTimeout)
	}
	if g.Xet != "auto" && g.Xet != "on" && g.Xet != "off" {
		return usagef("--xet must be auto, on or off, not %q", g.Xet)
	}
	m, _ := hub.ParseXetMode(g.Xet)
	g.xetMode = hub.XetModeFromEnv(nil, m)
	if g.Endpoint == "" {
		g.Endpoint = os.Getenv("HF_ENDPOINT")
	}
	if g.Endpoint == "" {
		g.Endpoint = "https://huggingface.co"
	}
	for len(g.Endpoint) > 0 && g.Endpoint[len(g.Endpoint)-1] == '/' {
		g.Endpoint = g.Endpoint[:len(g.Endpoint)-1]
	}
	level := zerolog.InfoLevel
	switch {
	case g.Verbose == 1:
		level = zerolog.DebugLevel
	case g.Verbose >= 2:
		level = zerolog.TraceLevel
	}
	var w io.Writer
	// Colour only on a terminal, and never with $NO_COLOR set (https://no-color.org).
	console := zerolog.ConsoleWriter{Out: g.stderr, TimeFormat: "15:04:05", NoColor: !colorEnabled(g.stderr)}
	switch g.LogFormat {
	case "json":
		w = g.stderr
	case "console":
		w = console
	case "auto", "":
		if isTerminal(g.stderr) {
			w = console
		} else {
			w = g.stderr
		}
	default:
		return usagef("--log-format must be auto, console or json, not %q", g.LogFormat)
	}
	// Transfers log from several goroutines at once; the writer (stderr, or a buffer in tests) need not be safe
	// for concurrent use, so the logger serializes its writes.
	g.log = zerolog.New(zerolog.SyncWriter(w)).Level(level).With().Timestamp().Logger()
	return nil
}

// colorEnabled reports whether output to w may use ANSI colours: w is a terminal and $NO_COLOR is unset or empty.
func colorEnabled(w io.Writer) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(w)
}

// progressBarsEnabled reports whether progress bars may be drawn on w: w is a terminal and
// $HF_HUB_DISABLE_PROGRESS_BARS is not set to a true value (huggingface_hub's switch).
func progressBarsEnabled(w io.Writer) bool {
	return !hub.Getenv(os.Getenv).Bool("HF_HUB_DISABLE_PROGRESS_BARS") && isTerminal(w)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
