package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Resolve fills the defaults that depend on the environment and makes paths absolute. getenv looks up
// environment variables (os.Getenv; nil means os.Getenv). It is idempotent.
//
//   - endpoint: $HF_ENDPOINT, else https://huggingface.co (trailing slashes removed);
//   - state_dir: $STATE_DIRECTORY (its first entry; systemd's StateDirectory=), else $XDG_STATE_HOME/hubsync,
//     else ~/.local/state/hubsync;
//   - HFHome: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface;
//   - adapter_repo of a publish: both entry: <repo>-adapter;
//   - "~/" is expanded; relative paths (dir, state_dir, staging_dir, and a base that starts with ./ or ../)
//     are made absolute against the configuration file's directory, or the working directory for a
//     configuration that did not come from a file.
func (c *Config) Resolve(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	base := c.baseDir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		base = wd
	}
	var err error
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		if p == "~" || strings.HasPrefix(p, "~/") {
			if home == "" {
				err = errors.New("config: cannot expand ~: no home directory")
				return p
			}
			p = filepath.Join(home, p[1:])
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(base, p)
		}
		return filepath.Clean(p)
	}

	if c.Endpoint == "" {
		c.Endpoint = getenv("HF_ENDPOINT")
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	c.Endpoint = strings.TrimRight(c.Endpoint, "/")

	if c.StateDir == "" {
		if sd, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); sd != "" {
			c.StateDir = sd
		} else if x := getenv("XDG_STATE_HOME"); x != "" {
			c.StateDir = filepath.Join(x, "hubsync")
		} else if home != "" {
			c.StateDir = filepath.Join(home, ".local", "state", "hubsync")
		} else {
			return errors.New("config: no state directory: set state_dir, $STATE_DIRECTORY or $HOME")
		}
	}
	c.StateDir = abs(c.StateDir)
	c.StagingDir = abs(c.StagingDir)

	if c.HFHome == "" {
		if h := getenv("HF_HOME"); h != "" {
			c.HFHome = h
		} else if x := getenv("XDG_CACHE_HOME"); x != "" {
			c.HFHome = filepath.Join(x, "huggingface")
		} else {
			c.HFHome = filepath.Join(home, ".cache", "huggingface")
		}
	}
	c.HFHome = abs(c.HFHome)

	for i := range c.Watch {
		w := &c.Watch[i]
		w.Dir = abs(w.Dir)
		if w.Base == "~" || strings.HasPrefix(w.Base, "~/") || strings.HasPrefix(w.Base, "./") ||
			strings.HasPrefix(w.Base, "../") || filepath.IsAbs(w.Base) {
			w.Base = abs(w.Base)
		}
		if w.Publish == PublishBoth && w.AdapterRepo == "" && w.Repo != "" {
			w.AdapterRepo = w.Repo + "-adapter"
		}
		if _, _, both, _ := SplitDType(w.DType); both && w.QuantRepo == "" && w.Repo != "" {
			w.QuantRepo = w.Repo + "-bnb-4bit"
		}
	}
	// Entries added by flags after Load start from DefaultWatch, but fill anything left empty.
	for i := range c.Watch {
		fillWatchDefaults(&c.Watch[i])
	}
	return err
}
