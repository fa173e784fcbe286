package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The store holds failing physical addresses and what was done about them:
// root's business only. SQLite gives the -wal and -shm files the mode of
// the main file, so making that one 0600 before SQLite opens it covers all
// three.
const fileMode = 0o600

// prepareFile creates path 0600 if it is missing, refuses a symlink or a
// non-regular file in its place (a planted link must not make the daemon
// write through it), and tightens the mode of an existing store and its
// WAL companions.
func prepareFile(path string) error {
	for i, p := range []string{path, path + "-wal", path + "-shm"} {
		flags := unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
		if i == 0 {
			flags |= unix.O_CREAT
		}
		fd, err := unix.Open(p, flags, fileMode)
		if errors.Is(err, unix.ENOENT) && i > 0 {
			continue
		}
		if errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("opening store %s: %s is a symbolic link; refusing to follow it", path, p)
		}
		if err != nil {
			return fmt.Errorf("opening store %s: %w", path, &os.PathError{Op: "open", Path: p, Err: err})
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			err = errors.New("not a regular file")
		}
		if err == nil && st.Mode&0o777 != fileMode {
			err = unix.Fchmod(fd, fileMode)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("opening store %s: %s: %w", path, p, err)
		}
	}
	return nil
}

// Recovery says what OpenRecovering had to do to give the daemon a store.
type Recovery struct {
	// MovedTo is where a corrupt store was moved; empty when none was.
	MovedTo string
	// Cause is why: the error opening the old file.
	Cause error
	// WasEmpty: the file existed with 0 bytes, so whatever history it had
	// is gone (truncated, or never written) and the daemon starts empty.
	WasEmpty bool
}

// OpenRecovering opens the store for the daemon. A corrupt file is not a
// reason to leave the host unprotected (a daemon that exits on it would
// crash-loop under Restart=on-failure): it is renamed to
// path.corrupt-<UTC time> with its WAL companions, a fresh store is
// created, and the Recovery says so for the caller to report loudly. Other
// errors (permissions, a newer schema, a full disk) are returned as they
// are: moving the file would not help and could lose history.
func OpenRecovering(path string, now time.Time) (*Store, *Recovery, error) {
	var rec *Recovery
	if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Size() == 0 {
		if _, werr := os.Lstat(path + "-wal"); werr != nil {
			rec = &Recovery{WasEmpty: true}
		}
	}
	s, err := Open(path)
	if err == nil {
		return s, rec, nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return nil, nil, err
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, now.UTC().Format("20060102T150405Z"))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if rerr := os.Rename(path+suffix, aside+suffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w; moving it aside failed: %w", err, rerr)
		}
	}
	s, oerr := Open(path)
	if oerr != nil {
		return nil, nil, fmt.Errorf("%w; moved to %s, but a fresh store failed too: %w", err, aside, oerr)
	}
	return s, &Recovery{MovedTo: aside, Cause: err}, nil
}
