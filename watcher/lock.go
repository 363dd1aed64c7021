package watcher

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// LockFileName is the lock file Lock creates in the directory it locks.
const LockFileName = ".hubsync.lock"

// Defaults for LockOptions.
const (
	DefaultHeartbeat  = 10 * time.Second
	DefaultStaleAfter = 2 * time.Minute
)

// ErrLocked matches (errors.Is) the *LockedError Lock returns when another daemon holds the lock.
var ErrLocked = errors.New("directory is locked by another hubsync daemon")

// LockInfo is what the lock file says about its holder.
type LockInfo struct {
	V       int       `json:"v"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Nonce identifies one holding, so a holder notices when its lock was taken over.
	Nonce string `json:"nonce"`
}

// LockedError reports the live holder of a lock.
type LockedError struct {
	Path   string
	Holder LockInfo
	// Heartbeat is the age of the holder's last heartbeat (the lock file's modification time).
	Heartbeat time.Duration
	// Creating is set when the file has no readable holder yet (another process is creating it).
	Creating bool
}

// Error names the holder and what to do.
func (e *LockedError) Error() string {
	if e.Creating {
		return fmt.Sprintf("%s: the lock file has no holder record yet: another hubsync process is taking the lock "+
			"right now, or one crashed while taking it (then it counts as stale once untouched for the stale "+
			"timeout, or delete it)", e.Path)
	}
	return fmt.Sprintf("%s: locked by hubsync pid %d on host %s since %s (last heartbeat %s ago); stop that daemon "+
		"first, or delete the file if it is gone", e.Path, e.Holder.PID, e.Holder.Host,
		e.Holder.Started.Format(time.RFC3339), e.Heartbeat.Round(time.Second))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// LockOptions configure Lock.
type LockOptions struct {
	// Heartbeat is how often the holder refreshes the lock file's modification time (0: DefaultHeartbeat).
	Heartbeat time.Duration
	// StaleAfter is how old a heartbeat must be before a lock held from another host (where the holder's
	// process cannot be checked) is taken over (0: DefaultStaleAfter). Keep it several heartbeats long; hosts
	// sharing the filesystem are assumed to have clocks within a few seconds of each other.
	StaleAfter time.Duration
	// CreateDir creates the directory when it does not exist.
	CreateDir bool
	// Log receives the warning when a stale lock is taken over, and heartbeat problems (zero value: disabled).
	Log zerolog.Logger

	hostname string           // tests pretend to be another host
	now      func() time.Time // tests move the clock
}

// DirLock is a held lock. Release it with Unlock.
type DirLock struct {
	path string
	info LockInfo
	log  zerolog.Logger
	f    *os.File

	stop     chan struct{}
	done     chan struct{}
	lost     chan struct{}
	lostOnce sync.Once
	unlock   sync.Once
}

// Path is the lock file's path.
func (l *DirLock) Path() string { return l.path }

// Info is what this holder wrote into the lock file.
func (l *DirLock) Info() LockInfo { return l.info }

// Lost is closed when the heartbeat finds the lock file replaced or removed by someone else (a takeover after
// this process stalled longer than the stale timeout). The daemon should then stop.
func (l *DirLock) Lost() <-chan struct{} { return l.lost }

// Lock takes the lock of dir: only one hubsync daemon may watch an output directory. The lock file
// dir/.hubsync.lock holds host, pid and start time; it is created with O_CREATE|O_EXCL and held with flock, and
// its modification time is refreshed every Heartbeat while held.
//
// When the file exists, Lock decides whether its holder is alive: on the same host, a holder that still holds
// the flock is alive, and one whose pid is dead is stale; from another host (or when the pid is alive but does
// not hold the flock), the holder is stale when its heartbeat is older than StaleAfter. A live holder makes Lock
// fail with a *LockedError naming it (errors.Is(err, ErrLocked)); a stale lock is taken over with a warning.
func Lock(dir string, opts LockOptions) (*DirLock, error) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("lock %s: hostname: %w", dir, err)
		}
		opts.hostname = h
	}
	if opts.CreateDir {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("lock %s: not a directory", dir)
	}
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	info := LockInfo{V: 1, Host: opts.hostname, PID: os.Getpid(), Started: opts.now().UTC().Truncate(time.Second),
		Nonce: hex.EncodeToString(nonce[:])}
	path := filepath.Join(dir, LockFileName)

	// A few rounds: the file can be removed or replaced between our open and our flock.
	for range 5 {
		f, created, err := openLockFile(path)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held, err := tryFlock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: flock: %w", path, err)
		}
		if held && !samePath(f, path) {
			f.Close() // we locked a file that was removed meanwhile
			continue
		}
		if created {
			// Another process may have opened our brand-new, still empty file and flocked it first; it finds
			// the file unreadable but fresh, gives up and lets go. Wait for that briefly.
			for i := 0; !held && err == nil && i < 100; i++ {
				time.Sleep(10 * time.Millisecond)
				held, err = tryFlock(f)
			}
			if !held || err != nil {
				f.Close()
				return nil, &LockedError{Path: path, Creating: true}
			}
			return startLock(path, f, info, opts)
		}
		cur, hbAge, readErr := readLock(f, opts.now())
		if !held {
			f.Close()
			if readErr != nil {
				return nil, &LockedError{Path: path, Creating: true}
			}
			return nil, &LockedError{Path: path, Holder: cur, Heartbeat: hbAge}
		}
		// We hold the flock, so no process on this kernel holds this file.
		why, stale := staleReason(cur, readErr, hbAge, opts)
		if !stale {
			f.Close()
			if readErr != nil {
				return nil, &LockedError{Path: path, Creating: true}
			}
			return nil, &LockedError{Path: path, Holder: cur, Heartbeat: hbAge}
		}
		opts.Log.Warn().Str("lock", path).Str("holder_host", cur.Host).Int("holder_pid", cur.PID).
			Str("why", why).Msg("taking over a stale lock")
		return startLock(path, f, info, opts)
	}
	return nil, fmt.Errorf("lock %s: the lock file keeps changing; is another daemon starting?", path)
}

// staleReason decides whether an existing lock whose flock we obtained is stale.
func staleReason(cur LockInfo, readErr error, hbAge time.Duration, opts LockOptions) (string, bool) {
	switch {
	case readErr != nil:
		if hbAge >= opts.StaleAfter {
			return fmt.Sprintf("unreadable lock file (%v), untouched for %s", readErr, hbAge.Round(time.Second)), true
		}
		return "", false
	case cur.Host == opts.hostname && !pidAlive(cur.PID):
		return fmt.Sprintf("holder pid %d is not running on this host", cur.PID), true
	case hbAge >= opts.StaleAfter:
		return fmt.Sprintf("no heartbeat for %s", hbAge.Round(time.Second)), true
	}
	return "", false
}

// openLockFile opens path, creating it exclusively when absent.
func openLockFile(path string) (f *os.File, created bool, err error) {
	for range 3 {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, false, err
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return f, false, nil
		}
		if !isNotExist(err) {
			return nil, false, err
		}
		// Removed between the two opens: try again.
	}
	return nil, false, err
}

// readLock parses the lock file and returns the age of its heartbeat (modification time).
func readLock(f *os.File, now time.Time) (LockInfo, time.Duration, error) {
	st, err := f.Stat()
	if err != nil {
		return LockInfo{}, 0, err
	}
	age := max(now.Sub(st.ModTime()), 0)
	data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<16))
	if err != nil {
		return LockInfo{}, age, err
	}
	var info LockInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return LockInfo{}, age, fmt.Errorf("not a lock record: %w", err)
	}
	if info.Host == "" || info.PID <= 0 {
		return LockInfo{}, age, errors.New("lock record without host or pid")
	}
	return info, age, nil
}

// startLock writes info into the flocked file f and starts the heartbeat.
func startLock(path string, f *os.File, info LockInfo, opts LockOptions) (*DirLock, error) {
	data, _ := json.Marshal(info)
	data = append(data, '\n')
	err := f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(data, 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	l := &DirLock{path: path, info: info, log: opts.Log, f: f,
		stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
	go l.heartbeat(opts.Heartbeat)
	return l, nil
}

func (l *DirLock) heartbeat(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.verify(); err != nil {
				l.log.Error().Err(err).Str("lock", l.path).Msg("lost the directory lock")
				l.lostOnce.Do(func() { close(l.lost) })
				return
			}
			if err := touch(l.path); err != nil {
				l.log.Warn().Err(err).Str("lock", l.path).Msg("cannot refresh the lock heartbeat")
			}
		}
	}
}

// verify checks that the lock file at path is still ours.
func (l *DirLock) verify() error {
	if !samePath(l.f, l.path) {
		return errors.New("lock file removed or replaced")
	}
	cur, _, err := readLock(l.f, time.Now())
	if err != nil {
		return err
	}
	if cur.Nonce != l.info.Nonce {
		return fmt.Errorf("lock taken over by pid %d on host %s", cur.PID, cur.Host)
	}
	return nil
}

// Unlock stops the heartbeat and removes the lock file if it is still ours. It is safe to call more than once.
func (l *DirLock) Unlock() error {
	var err error
	l.unlock.Do(func() {
		close(l.stop)
		<-l.done
		if l.verify() == nil {
			if rerr := os.Remove(l.path); rerr != nil && !isNotExist(rerr) {
				err = fmt.Errorf("unlock %s: %w", l.path, rerr)
			}
		}
		if cerr := l.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("unlock %s: %w", l.path, cerr)
		}
	})
	return err
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}
