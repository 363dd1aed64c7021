package hub

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	gokeyring "github.com/zalando/go-keyring"
)

// Keyring stores secrets by service and user. Implementations: SystemKeyring (the OS keyring through
// go-keyring) and MemoryKeyring (tests).
type Keyring interface {
	// Get returns the secret, or an error matching ErrKeyringNotFound when there is none.
	Get(ctx context.Context, service, user string) (string, error)
	// Set stores the secret, replacing any earlier one.
	Set(ctx context.Context, service, user, secret string) error
	// Delete removes the secret; an error matching ErrKeyringNotFound when there was none.
	Delete(ctx context.Context, service, user string) error
}

// Keyring errors.
var (
	// ErrKeyringNotFound: the keyring has no such entry.
	ErrKeyringNotFound = errors.New("no such keyring entry")
	// ErrKeyringUnavailable: there is no usable keyring (no session bus, timed out, or the backend failed).
	ErrKeyringUnavailable = errors.New("keyring unavailable")
)

// DefaultKeyringTimeout bounds one keyring call: a locked or absent secret service must not hang the CLI.
const DefaultKeyringTimeout = 2 * time.Second

// SystemKeyring is the OS keyring (Secret Service over D-Bus on Linux, Keychain on macOS, Credential Manager on
// Windows) with a timeout per call and, on Unix other than macOS, a fast skip when no session bus is reachable.
type SystemKeyring struct {
	// Getenv reads DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR (nil: os.Getenv).
	Getenv Getenv
	// Timeout bounds each call (default DefaultKeyringTimeout).
	Timeout time.Duration
}

var _ Keyring = SystemKeyring{}

// available reports why the keyring cannot be reached, or nil.
func (k SystemKeyring) available() error {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return nil
	}
	addr := k.Getenv.get("DBUS_SESSION_BUS_ADDRESS")
	if addr != "" {
		// "unix:path=/run/user/1000/bus[,guid=...]": check the socket; other transports: assume reachable.
		for _, part := range strings.Split(strings.TrimPrefix(addr, "unix:"), ",") {
			if p, ok := strings.CutPrefix(part, "path="); ok && strings.HasPrefix(addr, "unix:") {
				if _, err := os.Stat(p); err != nil {
					return fmt.Errorf("%w: session bus socket %s: %v", ErrKeyringUnavailable, p, err)
				}
			}
		}
		return nil
	}
	if rt := k.Getenv.get("XDG_RUNTIME_DIR"); rt != "" {
		if st, err := os.Stat(filepath.Join(rt, "bus")); err == nil && st.Mode()&os.ModeSocket != 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)", ErrKeyringUnavailable)
}

// withTimeout runs f in a goroutine bounded by the timeout and ctx. go-keyring calls cannot be cancelled, so a
// call that times out is abandoned (its goroutine ends when the backend answers).
func (k SystemKeyring) withTimeout(ctx context.Context, f func() (string, error)) (string, error) {
	if err := k.available(); err != nil {
		return "", err
	}
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = DefaultKeyringTimeout
	}
	type result struct {
		v   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if errors.Is(r.err, gokeyring.ErrNotFound) {
			return "", ErrKeyringNotFound
		}
		if r.err != nil {
			return "", fmt.Errorf("%w: %v", ErrKeyringUnavailable, r.err)
		}
		return r.v, nil
	case <-t.C:
		return "", fmt.Errorf("%w: no answer within %s", ErrKeyringUnavailable, timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Get implements Keyring.
func (k SystemKeyring) Get(ctx context.Context, service, user string) (string, error) {
	return k.withTimeout(ctx, func() (string, error) { return gokeyring.Get(service, user) })
}

// Set implements Keyring.
func (k SystemKeyring) Set(ctx context.Context, service, user, secret string) error {
	_, err := k.withTimeout(ctx, func() (string, error) { return "", gokeyring.Set(service, user, secret) })
	return err
}

// Delete implements Keyring.
func (k SystemKeyring) Delete(ctx context.Context, service, user string) error {
	_, err := k.withTimeout(ctx, func() (string, error) { return "", gokeyring.Delete(service, user) })
	return err
}

// MemoryKeyring is an in-memory Keyring for tests. Unavailable makes every call fail with ErrKeyringUnavailable.
type MemoryKeyring struct {
	mu          sync.Mutex
	m           map[string]string
	Unavailable bool
}

var _ Keyring = (*MemoryKeyring)(nil)

func memKey(service, user string) string { return service + "\x00" + user }

// Get implements Keyring.
func (k *MemoryKeyring) Get(_ context.Context, service, user string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Unavailable {
		return "", ErrKeyringUnavailable
	}
	v, ok := k.m[memKey(service, user)]
	if !ok {
		return "", ErrKeyringNotFound
	}
	return v, nil
}

// Set implements Keyring.
func (k *MemoryKeyring) Set(_ context.Context, service, user, secret string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Unavailable {
		return ErrKeyringUnavailable
	}
	if k.m == nil {
		k.m = map[string]string{}
	}
	k.m[memKey(service, user)] = secret
	return nil
}

// Delete implements Keyring.
func (k *MemoryKeyring) Delete(_ context.Context, service, user string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.Unavailable {
		return ErrKeyringUnavailable
	}
	if _, ok := k.m[memKey(service, user)]; !ok {
		return ErrKeyringNotFound
	}
	delete(k.m, memKey(service, user))
	return nil
}
