package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/internal/pipeline"
	"github.com/hubsync/hubsync/internal/timing"
)

// errWrongToken marks a token the Hub refuses or that cannot write (watch's start-up check).
var errWrongToken = errors.New("wrong Hub token")

// checkWatchToken asks the Hub who the token belongs to before any merge starts: a token the Hub rejects (401)
// or a read-only token is an error matching errWrongToken. The target namespaces are checked against the
// user's and their organisations' names; a namespace outside them is a warning (a fine-grained or org token may
// still write there; the job then waits on the Hub's 403). A Hub that cannot be reached is a warning: jobs wait
// for it like for any fixable error.
func checkWatchToken(ctx context.Context, g *globalOptions, cfg *config.Config, tok hub.Token, log zerolog.Logger) error {
	c, err := newHubClient(g, tok.Value, nil)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	who, err := c.WhoAmI(ctx)
	switch {
	case errors.Is(err, hub.ErrUnauthorized), errors.Is(err, hub.ErrForbidden):
		return fmt.Errorf("%w: the Hub rejected the token from %s (%v); give a valid write token (HF_TOKEN, hubsync login, $CREDENTIALS_DIRECTORY/hf_token)", errWrongToken, tok, err)
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn().Err(err).Msg("cannot check the token now (the Hub is unreachable?); jobs wait for the Hub")
		return nil
	}
	if who.Role() == "read" {
		return fmt.Errorf("%w: the token from %s (user %s) is read-only; publishing needs a write token", errWrongToken, tok, who.Name)
	}
	spaces := map[string]bool{who.Name: true}
	for _, o := range who.Orgs {
		spaces[o.Name] = true
	}
	for _, w := range cfg.Watch {
		for _, repo := range []string{w.Repo, w.AdapterRepo} {
			ns, _, ok := strings.Cut(repo, "/")
			if ok && !spaces[ns] {
				log.Warn().Str("repo", repo).Str("user", who.Name).
					Msg("the token's user is not in the repo's namespace; publishing fails unless the token may write there")
			}
		}
	}
	log.Info().Str("user", who.Name).Str("role", who.Role()).Msg("token checked")
	return nil
}

// waitForToken runs the start-up token check. Interactively a wrong token is returned (exit 1). Under systemd
// ($NOTIFY_SOCKET set) restarting cannot fix it, so the error is logged, shown in STATUS=, and the token is
// looked up and checked again with capped backoff until it is right or ctx ends.
func waitForToken(ctx context.Context, g *globalOptions, cfg *config.Config, tok hub.Token, log zerolog.Logger,
	getenv func(string) string, notify pipeline.Notifier, find func() (hub.Token, error)) (hub.Token, error) {
	wait := 10 * time.Second
	for {
		err := checkWatchToken(ctx, g, cfg, tok, log)
		if err == nil || !errors.Is(err, errWrongToken) || getenv("NOTIFY_SOCKET") == "" {
			return tok, err
		}
		log.Error().Err(err).Str("retry_in", wait.String()).Msg("waiting for a valid token")
		if notify != nil {
			// Started (so systemd does not time the start out), but waiting: STATUS= says why.
			_ = notify.Notify("READY=1")
			_ = notify.Notify("STATUS=waiting for a valid Hub token: " + err.Error())
		}
		if err := sleepPinging(ctx, wait, notify); err != nil {
			return tok, err
		}
		wait = min(2*wait, 10*time.Minute)
		if t, ferr := find(); ferr == nil && t.Found() {
			tok = t
		}
	}
}

// sleepPinging waits d, pinging the service manager's watchdog meanwhile.
func sleepPinging(ctx context.Context, d time.Duration, notify pipeline.Notifier) error {
	step := d
	if notify != nil {
		if iv := notify.WatchdogInterval(); iv > 0 && iv/2 < step {
			step = iv / 2
		}
	}
	for d > 0 {
		s := min(step, d)
		if err := timing.Sleep(ctx, s); err != nil {
			return err
		}
		d -= s
		if notify != nil && notify.WatchdogInterval() > 0 {
			_ = notify.Notify("WATCHDOG=1")
		}
	}
	return nil
}
