package kpath

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// KeptFile is a descriptor kept open to be read, or written, at offsets.
type KeptFile interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// ReadOnce is one read(2) at off: what the kernel hands out at once,
	// and 0 with io.EOF at the end.
	ReadOnce(b []byte, off int64) (int, error)
}

// KeepOpener is an FS that can keep a file open to use it again and
// again. OS does, for procfs and sysfs files only.
type KeepOpener interface {
	// OpenKept opens name for repeated reads (or writes, when write), or
	// says ErrNotKeepable when an old descriptor could behave differently
	// from opening the file anew.
	OpenKept(name string, write bool) (KeptFile, error)
}

// ErrNotKeepable: the file is used by opening it each time.
var ErrNotKeepable = errors.New("not a file to keep open")

// OpenKept keeps procfs and sysfs files only. Their content is made at
// each read from offset 0 (seq_file starts over there; kpageflags and
// sysctls read at the offset asked), a sysfs attribute's store runs at
// every write whatever the offset, and neither file system swaps a file
// under its name, so a kept descriptor does what an open, read or write
// and close would, without the path lookup: 200-400 µs under emulation.
// A regular file can be replaced by a rename (the simulator writes
// meminfo that way), and an old descriptor would then see the replaced
// file.
//
// The file system is asked by path before anything is opened: an open
// for writing of a FIFO (the simulator's offline files are FIFOs) waits
// for a reader, and the daemon opens its kept files at start.
func (OS) OpenKept(name string, write bool) (KeptFile, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(name, &st); err != nil {
		return nil, &fs.PathError{Op: "statfs", Path: name, Err: err}
	}
	if st.Type != unix.PROC_SUPER_MAGIC && st.Type != unix.SYSFS_MAGIC {
		return nil, ErrNotKeepable
	}
	flags := unix.O_RDONLY
	if write {
		flags = unix.O_WRONLY
	}
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(name, flags|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &keptFD{fd: fd, name: name}, nil
}

type keptFD struct {
	fd   int
	name string
}

func (k *keptFD) ReadAt(b []byte, off int64) (int, error) { return preadFull(k.fd, k.name, b, off) }

func (k *keptFD) ReadOnce(b []byte, off int64) (int, error) {
	n, err := ignoringEINTR(func() (int, error) { return unix.Pread(k.fd, b, off) })
	switch {
	case err != nil:
		return 0, &fs.PathError{Op: "read", Path: k.name, Err: err}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// WriteAt is one pwrite(2): a sysfs attribute takes its value in one write,
// and a short one is an error, as in OS.WriteFile.
func (k *keptFD) WriteAt(b []byte, off int64) (int, error) {
	n, err := ignoringEINTR(func() (int, error) { return unix.Pwrite(k.fd, b, off) })
	switch {
	case err != nil:
		return n, &fs.PathError{Op: "write", Path: k.name, Err: err}
	case n < len(b):
		return n, &fs.PathError{Op: "write", Path: k.name, Err: io.ErrShortWrite}
	}
	return n, nil
}

func (k *keptFD) Close() error { return unix.Close(k.fd) }

// keptUse is what a Kept is for.
type keptUse int

const (
	keptRead  keptUse = iota // read, maybe at offsets, maybe in pieces
	keptWhole                // read whole in one read when it fits
	keptWrite                // written
)

// Kept uses one kernel file on the way to an isolation (meminfo for the
// page budget, kpageflags before and after the write, the offline file
// itself) through a descriptor kept open when fsys can keep it, and
// through fsys's own calls otherwise. Safe for concurrent use.
type Kept struct {
	fsys FS
	name string
	use  keptUse

	mu      sync.Mutex
	f       KeptFile // nil until first used, and after a failure
	refused bool     // fsys cannot keep this file: open it each time
}

// Keep returns a Kept to read name; nothing is opened until the first read.
func Keep(fsys FS, name string) *Kept { return &Kept{fsys: fsys, name: name, use: keptRead} }

// KeepWhole is Keep for a file the kernel hands out whole in one read
// that has room for it: a procfs file made by one show (single_open, as
// meminfo) or a sysctl. ReadFile then costs one read, where a file made
// record by record needs a second read to see its end.
func KeepWhole(fsys FS, name string) *Kept { return &Kept{fsys: fsys, name: name, use: keptWhole} }

// KeepForWrite returns a Kept to write name (a sysfs attribute).
func KeepForWrite(fsys FS, name string) *Kept { return &Kept{fsys: fsys, name: name, use: keptWrite} }

// Name is the file's path.
func (k *Kept) Name() string { return k.name }

// Open opens the kept descriptor now, so that the first read or write on
// the way to an isolation does not pay for the path lookup. An error is
// returned, and met again at the first use.
func (k *Kept) Open() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.open()
	return err
}

// open returns the kept descriptor, opening it at the first use, or nil
// when the file is used through fsys each time. Called with mu held.
func (k *Kept) open() (KeptFile, error) {
	if k.f != nil || k.refused {
		return k.f, nil
	}
	opener, ok := k.fsys.(KeepOpener)
	if !ok {
		k.refused = true
		return nil, nil
	}
	f, err := opener.OpenKept(k.name, k.use == keptWrite)
	switch {
	case errors.Is(err, ErrNotKeepable):
		k.refused = true
		return nil, nil
	case err != nil:
		return nil, err
	}
	k.f = f
	return f, nil
}

// readable returns the descriptor to read, or an error for a Kept meant
// for writing. Called with mu held.
func (k *Kept) readable() (KeptFile, error) {
	if k.use == keptWrite {
		return nil, fmt.Errorf("%s: kept for writing, not reading", k.name)
	}
	return k.open()
}

// ReadAt reads len(b) bytes at off, as FS.ReadAt. A failed read closes
// the descriptor: the next read opens the file again.
func (k *Kept) ReadAt(b []byte, off int64) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.readable()
	if err != nil {
		return 0, err
	}
	if f == nil {
		return k.fsys.ReadAt(k.name, b, off)
	}
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		k.dropLocked()
	}
	return n, err
}

// ReadFile reads the whole file, as FS.ReadFile.
func (k *Kept) ReadFile() ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.readable()
	if err != nil {
		return nil, err
	}
	if f == nil {
		return k.fsys.ReadFile(k.name)
	}
	b := make([]byte, 4096)
	done := 0
	if k.use == keptWhole {
		// Such a file is at its end once one read has room left: no
		// second read to find the end (a seq_file makes the whole content
		// again for it).
		n, err := f.ReadOnce(b, 0)
		switch {
		case errors.Is(err, io.EOF):
			return b[:0], nil
		case err != nil:
			k.dropLocked()
			return nil, err
		case n < len(b):
			return b[:n], nil
		}
		done = n
		b = append(b, make([]byte, len(b))...)
	}
	for {
		n, err := f.ReadAt(b[done:], int64(done))
		done += n
		switch {
		case errors.Is(err, io.EOF):
			return b[:done], nil
		case err != nil:
			k.dropLocked()
			return nil, err
		}
		b = append(b, make([]byte, len(b))...)
	}
}

// WriteFile writes data in one write, as FS.WriteFile. A failed write
// closes the descriptor, so that the next write opens the file again
// (the failure is most often the kernel refusing the value, which a new
// descriptor does not change, but a descriptor gone bad would fail every
// write after it).
func (k *Kept) WriteFile(data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.use != keptWrite {
		return fmt.Errorf("%s: kept for reading, not writing", k.name)
	}
	f, err := k.open()
	if err != nil {
		return err
	}
	if f == nil {
		return k.fsys.WriteFile(k.name, data)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		k.dropLocked()
		return err
	}
	return nil
}

// Close releases the descriptor; a later use opens the file again.
func (k *Kept) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	return err
}

func (k *Kept) dropLocked() {
	if k.f != nil {
		k.f.Close()
		k.f = nil
	}
}
