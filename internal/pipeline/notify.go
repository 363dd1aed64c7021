package pipeline

import (
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier receives the daemon's service-manager notifications: "READY=1" once watching, "STATUS=..." lines
// saying what it is doing, "WATCHDOG=1" pings from the live main loop, "STOPPING=1" when it shuts down.
type Notifier interface {
	// Notify sends one state string. Errors are logged, never fatal.
	Notify(state string) error
	// WatchdogInterval is the service manager's watchdog timeout (0: no watchdog). The daemon pings at half of it.
	WatchdogInterval() time.Duration
}

// SystemdNotifier notifies systemd through $NOTIFY_SOCKET (sd_notify). Outside systemd ($NOTIFY_SOCKET unset)
// every call is a no-op, so it is safe to use unconditionally.
type SystemdNotifier struct {
	watchdog time.Duration
}

// NewSystemdNotifier reads $WATCHDOG_USEC / $WATCHDOG_PID (systemd's WatchdogSec=) once.
func NewSystemdNotifier() *SystemdNotifier {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		d = 0
	}
	return &SystemdNotifier{watchdog: d}
}

// Notify implements Notifier.
func (s *SystemdNotifier) Notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// WatchdogInterval implements Notifier.
func (s *SystemdNotifier) WatchdogInterval() time.Duration { return s.watchdog }

// Notification states.
const (
	notifyReady    = daemon.SdNotifyReady
	notifyStopping = daemon.SdNotifyStopping
	notifyWatchdog = daemon.SdNotifyWatchdog
)
