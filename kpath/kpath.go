// Package kpath holds the roots of the kernel's pseudo filesystems. Every
// other package builds its paths from a Paths value, so the whole daemon runs
// unchanged against a fixture tree or the simulator.
package kpath

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Paths are the mount points the daemon reads and writes through.
type Paths struct {
	Sys     string // sysfs, normally /sys
	Proc    string // procfs, normally /proc
	Tracing string // tracefs, normally /sys/kernel/tracing
	Debug   string // debugfs, normally /sys/kernel/debug
	Dev     string // devtmpfs, normally /dev
}

// Default returns the real mounts. Tracing is left empty: Resolve picks
// /sys/kernel/tracing or the older /sys/kernel/debug/tracing.
func Default() Paths {
	return Paths{Sys: "/sys", Proc: "/proc", Debug: "/sys/kernel/debug", Dev: "/dev"}
}

// Under returns the layout of a fixture or simulator tree rooted at dir.
func Under(dir string) Paths {
	return Paths{
		Sys:     filepath.Join(dir, "sys"),
		Proc:    filepath.Join(dir, "proc"),
		Tracing: filepath.Join(dir, "sys/kernel/tracing"),
		Debug:   filepath.Join(dir, "sys/kernel/debug"),
		Dev:     filepath.Join(dir, "dev"),
	}
}

// Resolve fills an empty Tracing with the first tracefs mount that exists:
// <sys>/kernel/tracing (kernel 4.1+), then <debug>/tracing.
func (p Paths) Resolve() Paths {
	if p.Tracing != "" {
		return p
	}
	candidates := []string{filepath.Join(p.Sys, "kernel/tracing"), filepath.Join(p.Debug, "tracing")}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "instances")); err == nil {
			p.Tracing = c
			return p
		}
	}
	p.Tracing = candidates[0]
	return p
}

func (p Paths) SysPath(elem ...string) string {
	return filepath.Join(append([]string{p.Sys}, elem...)...)
}
func (p Paths) ProcPath(elem ...string) string {
	return filepath.Join(append([]string{p.Proc}, elem...)...)
}
func (p Paths) TracingPath(elem ...string) string {
	return filepath.Join(append([]string{p.Tracing}, elem...)...)
}
func (p Paths) DebugPath(elem ...string) string {
	return filepath.Join(append([]string{p.Debug}, elem...)...)
}
func (p Paths) DevPath(elem ...string) string {
	return filepath.Join(append([]string{p.Dev}, elem...)...)
}

// FS is the small filesystem seam actuators and readers go through, so
// package tests can make a sysfs write fail with EBUSY, EIO or EPERM.
type FS interface {
	ReadFile(name string) ([]byte, error)
	// WriteFile writes data in one write(2) to an existing file, as sysfs
	// attributes expect, and returns the write's own error.
	WriteFile(name string, data []byte) error
	// ReadAt reads len(b) bytes at off (for /proc/kpageflags).
	ReadAt(name string, b []byte, off int64) (int, error)
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
}

// OS is the real filesystem.
type OS struct{}

func (OS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (OS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// WriteFile writes in plain open/write/close system calls, as ReadFile
// reads: an offline write is on the way from an error to its isolation.
func (OS) WriteFile(name string, data []byte) error {
	// O_TRUNC is ignored by sysfs and FIFOs but keeps plain fixture files
	// from holding the tail of a longer earlier value.
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(name, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0) })
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	n, werr := ignoringEINTR(func() (int, error) { return unix.Write(fd, data) })
	cerr := unix.Close(fd)
	switch {
	case werr != nil:
		return &fs.PathError{Op: "write", Path: name, Err: werr}
	case n < len(data):
		return &fs.PathError{Op: "write", Path: name, Err: io.ErrShortWrite}
	case cerr != nil:
		return &fs.PathError{Op: "close", Path: name, Err: cerr}
	}
	return nil
}

// ReadFile reads a whole file in plain open/read/close system calls. The
// daemon's reads are sysfs and procfs attributes, a page at most: through
// os.ReadFile each also cost two fstat(2)s and an epoll_ctl(2) the kernel
// refuses (seven calls for one value, four here), and the health check
// reads dozens per tick; under emulation every call counts. It reads
// until end of file, as a seq_file may hand a long file out in pieces.
func (OS) ReadFile(name string) ([]byte, error) {
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 4096)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := ignoringEINTR(func() (int, error) { return unix.Read(fd, b[len(b):cap(b)]) })
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

func ignoringEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// ReadAt reads len(b) bytes at off in plain open/pread/close system
// calls; fewer at the end of the file, with io.EOF, as os.File.ReadAt.
func (OS) ReadAt(name string, b []byte, off int64) (int, error) {
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return preadFull(fd, name, b, off)
}

// preadFull fills b from off in pread(2) calls: fewer bytes at the end of
// the file, with io.EOF, as os.File.ReadAt.
func preadFull(fd int, name string, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := ignoringEINTR(func() (int, error) { return unix.Pread(fd, b[done:], off+int64(done)) })
		if err != nil {
			return done, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}
