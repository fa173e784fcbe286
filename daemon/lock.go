package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning is returned when another daemon owns the state directory
// or answers on the control socket.
var ErrAlreadyRunning = errors.New("another selfprotect daemon is running")

// stateLock is an exclusive flock on <state>/lock. The kernel drops it when
// the process dies, so a crashed daemon never leaves a stale lock behind.
type stateLock struct{ f *os.File }

func lockState(dir, socket string) (*stateLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	// The directory holds failing physical addresses: root's only, even
	// when it was created earlier (or by a unit) with a looser mode.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "lock")
	// O_NOFOLLOW: a planted symlink must not make the truncate below
	// clobber whatever it points at.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("opening %s: it is a symbolic link; refusing to follow it", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by pid %s", ErrAlreadyRunning, path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// The lock guards the state directory; a daemon started with another
	// state directory but the same socket must refuse too.
	if c, err := net.DialTimeout("unix", socket, 200*time.Millisecond); err == nil {
		c.Close()
		f.Close()
		return nil, fmt.Errorf("%w: %s answers", ErrAlreadyRunning, socket)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &stateLock{f: f}, nil
}

func (l *stateLock) release() {
	if l != nil && l.f != nil {
		_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
	}
}
