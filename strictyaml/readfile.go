package strictyaml

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// ReadConfigFile reads a file the daemon's configuration is made of (the
// policy, a url_file, a ca_file), at most limit bytes. Configuration loads
// on the daemon's main loop at every SIGHUP, so the read must not wait:
// the file is opened without blocking and refused unless it is a regular
// file (an open or read of a FIFO with no writer, or of a terminal, waits
// until something arrives, and intake would wait with it). Symlinks are
// followed: configuration management often installs files that way.
func ReadConfigFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", path, fileKind(st.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// fileKind names what a path is when it is not a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO (reading it would wait for a writer)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device (reading it could wait without end)"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "not a plain file (" + m.Type().String() + ")"
}
