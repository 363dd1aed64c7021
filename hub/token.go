package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
)

// TokenSource says where a token was found.
type TokenSource string

// Token sources, in the order FindToken tries them.
const (
	TokenSourceNone        TokenSource = ""
	TokenSourceFlag        TokenSource = "--token"
	TokenSourceCredentials TokenSource = "$CREDENTIALS_DIRECTORY/hf_token"
	TokenSourceEnv         TokenSource = "HF_TOKEN"
	TokenSourceEnvLegacy   TokenSource = "HUGGING_FACE_HUB_TOKEN"
	TokenSourceKeyring     TokenSource = "keyring"
	TokenSourceFile        TokenSource = "token file"
)

// Token is a Hub token and where it came from. Its String, GoString and MarshalJSON never show the value.
type Token struct {
	Value    string
	Source   TokenSource
	Location string // the file read, or the keyring entry "service/user"; empty for flag and env
}

// String describes the source, never the value.
func (t Token) String() string {
	if t.Source == TokenSourceNone {
		return "no token"
	}
	if t.Location != "" {
		return fmt.Sprintf("%s (%s)", t.Source, t.Location)
	}
	return string(t.Source)
}

// GoString is String, so %#v does not print the value either.
func (t Token) GoString() string { return "hub.Token{" + t.String() + "}" }

// MarshalJSON encodes the source and location only.
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Source   TokenSource `json:"source"`
		Location string      `json:"location,omitempty"`
	}{t.Source, t.Location})
}

// Found reports whether a token was found.
func (t Token) Found() bool { return t.Value != "" }

// Getenv looks up an environment variable (os.Getenv; tests pass a map's lookup).
type Getenv func(key string) string

func (g Getenv) get(key string) string {
	if g == nil {
		return os.Getenv(key)
	}
	return g(key)
}

// Bool reads a boolean variable the way huggingface_hub does: 1, ON, YES or TRUE (any case) is true.
func (g Getenv) Bool(key string) bool {
	switch strings.ToUpper(strings.TrimSpace(g.get(key))) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// homeDir returns $HOME, else the OS's idea of it.
func (g Getenv) homeDir() string {
	if h := g.get("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

// HFHome returns $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
func HFHome(getenv Getenv) string {
	if h := getenv.get("HF_HOME"); h != "" {
		return expandHome(getenv, h)
	}
	if x := getenv.get("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(expandHome(getenv, x), "huggingface")
	}
	return filepath.Join(getenv.homeDir(), ".cache", "huggingface")
}

// TokenFilePath returns $HF_TOKEN_PATH, else $HF_HOME/token (huggingface_hub's token file).
func TokenFilePath(getenv Getenv) string {
	if p := getenv.get("HF_TOKEN_PATH"); p != "" {
		return expandHome(getenv, p)
	}
	return filepath.Join(HFHome(getenv), "token")
}

// HubCacheDir returns $HF_HUB_CACHE (legacy $HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub.
func HubCacheDir(getenv Getenv) string {
	if p := getenv.get("HF_HUB_CACHE"); p != "" {
		return expandHome(getenv, p)
	}
	if p := getenv.get("HUGGINGFACE_HUB_CACHE"); p != "" {
		return expandHome(getenv, p)
	}
	return filepath.Join(HFHome(getenv), "hub")
}

func expandHome(getenv Getenv, p string) string {
	if p == "~" {
		return getenv.homeDir()
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(getenv.homeDir(), p[2:])
	}
	return p
}

// KeyringService is the keyring service name hubsync stores tokens under.
const KeyringService = "hubsync"

// KeyringUser returns the keyring user for an endpoint: its host (with the port when one is given), so tokens
// for different Hubs do not collide.
func KeyringUser(endpoint string) string {
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || u.Host == "" {
		return endpoint
	}
	return strings.ToLower(u.Host)
}

// TokenLookup configures FindToken.
type TokenLookup struct {
	// Explicit is the --token value (highest priority).
	Explicit string
	// Getenv reads the environment (nil: os.Getenv).
	Getenv Getenv
	// Keyring is consulted after the environment (nil: skipped).
	Keyring Keyring
	// Endpoint picks the keyring entry (KeyringUser).
	Endpoint string
	// Logger gets a debug line per source that was skipped for a reason worth knowing.
	Logger zerolog.Logger
}

// FindToken returns the first token found, in this order: --token, $CREDENTIALS_DIRECTORY/hf_token (systemd
// LoadCredential=), $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, the keyring (service "hubsync", user = endpoint host),
// $HF_TOKEN_PATH else $HF_HOME/token (read only). Values are trimmed; an empty value counts as none. No token
// found is not an error (Token.Found reports false). An unreadable credential file is an error naming it.
func FindToken(ctx context.Context, l TokenLookup) (Token, error) {
	if v := strings.TrimSpace(l.Explicit); v != "" {
		return Token{Value: v, Source: TokenSourceFlag}, nil
	}
	if dir := l.Getenv.get("CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, "hf_token")
		v, err := ReadTokenFile(p)
		if err != nil {
			return Token{}, err
		}
		if v != "" {
			return Token{Value: v, Source: TokenSourceCredentials, Location: p}, nil
		}
	}
	if v := strings.TrimSpace(l.Getenv.get("HF_TOKEN")); v != "" {
		return Token{Value: v, Source: TokenSourceEnv}, nil
	}
	if v := strings.TrimSpace(l.Getenv.get("HUGGING_FACE_HUB_TOKEN")); v != "" {
		return Token{Value: v, Source: TokenSourceEnvLegacy}, nil
	}
	if l.Keyring != nil {
		user := KeyringUser(l.Endpoint)
		v, err := l.Keyring.Get(ctx, KeyringService, user)
		switch {
		case err == nil && strings.TrimSpace(v) != "":
			return Token{Value: strings.TrimSpace(v), Source: TokenSourceKeyring, Location: KeyringService + "/" + user}, nil
		case err != nil && !errors.Is(err, ErrKeyringNotFound):
			l.Logger.Debug().Err(err).Msg("keyring skipped")
		}
		if ctx.Err() != nil {
			return Token{}, ctx.Err()
		}
	}
	p := TokenFilePath(l.Getenv)
	v, err := ReadTokenFile(p)
	if err != nil {
		return Token{}, err
	}
	if v != "" {
		return Token{Value: v, Source: TokenSourceFile, Location: p}, nil
	}
	return Token{}, nil
}

// maxTokenFile bounds how much of a token file is read.
const maxTokenFile = 64 << 10

// ReadTokenFile returns the token stored in the file p (trimmed), "" when there is no such file.
func ReadTokenFile(p string) (string, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("reading token file %s: %w", p, err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("token file %s: larger than %d bytes, not a token", p, maxTokenFile)
	}
	return strings.TrimSpace(string(data)), nil
}

// WriteTokenFile stores token in path with mode 0600, creating its directory with mode 0700; the file is
// replaced atomically. (Only for `login --insecure-storage`.)
func WriteTokenFile(path, token string) error {
	token = strings.TrimSpace(token)
	if token == "" {
		return errors.New("refusing to write an empty token")
	}
	dir := filepath.Dir(path)
	// Missing directories are created 0700; an existing one keeps its mode (it may be a shared, sticky
	// directory such as /tmp, whose mode is not ours to change). The file itself is 0600 either way.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating token directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	if _, err := f.WriteString(token); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}
	ok = true
	return nil
}

// RemoveTokenFile deletes the token file at path; removed is false when there was none.
func RemoveTokenFile(path string) (removed bool, err error) {
	err = os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("removing token file: %w", err)
	}
	return true, nil
}
