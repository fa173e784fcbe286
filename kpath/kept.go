package kpath

import (
	"errors"
	"io"
	"io/fs"
	"sync"

	"golang.org/x/sys/unix"
)

// ReadAtCloser is a descriptor kept open to be read at offsets.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}

// KeepOpener is an FS that can keep a file open to read it again and
// again. OS does, for procfs files only.
type KeepOpener interface {
	// OpenKept opens name for repeated reads, or says ErrNotKeepable when
	// reading an old descriptor could differ from opening the file anew.
	OpenKept(name string) (ReadAtCloser, error)
}

// ErrNotKeepable: the file is read by opening it each time.
var ErrNotKeepable = errors.New("not a file to keep open")

// OpenKept keeps procfs files only. Their content is made at each read
// from offset 0 (seq_file starts over there; kpageflags and sysctls read
// at the offset asked), and procfs never swaps the file under a name, so
// a pread of a kept descriptor is the same as an open, read and close,
// without the path lookup: ~100 µs under emulation. A regular file can be
// replaced by a rename (the simulator writes meminfo that way), and an
// old descriptor would then read the replaced content.
func (OS) OpenKept(name string) (ReadAtCloser, error) {
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.PROC_SUPER_MAGIC {
		unix.Close(fd)
		return nil, ErrNotKeepable
	}
	return &keptFD{fd: fd, name: name}, nil
}

type keptFD struct {
	fd   int
	name string
}

func (k *keptFD) ReadAt(b []byte, off int64) (int, error) { return preadFull(k.fd, k.name, b, off) }

func (k *keptFD) Close() error { return unix.Close(k.fd) }

// Kept reads one kernel file that is read on the way to an isolation
// (meminfo for the page budget, kpageflags before and after the write)
// through a descriptor kept open when fsys can keep it, and through
// fsys's own reads otherwise. Safe for concurrent use.
type Kept struct {
	fsys FS
	name string

	mu      sync.Mutex
	f       ReadAtCloser // nil until the first read, and after a failed one
	refused bool         // fsys cannot keep this file: read it each time
}

// Keep returns a Kept for name; nothing is opened until the first read.
func Keep(fsys FS, name string) *Kept {
	return &Kept{fsys: fsys, name: name}
}

// Name is the file's path.
func (k *Kept) Name() string { return k.name }

// open returns the kept descriptor, opening it at the first read, or nil
// when the file is read through fsys each time. Called with mu held.
func (k *Kept) open() (ReadAtCloser, error) {
	if k.f != nil || k.refused {
		return k.f, nil
	}
	opener, ok := k.fsys.(KeepOpener)
	if !ok {
		k.refused = true
		return nil, nil
	}
	f, err := opener.OpenKept(k.name)
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

// ReadAt reads len(b) bytes at off, as FS.ReadAt. A failed read closes
// the descriptor: the next read opens the file again.
func (k *Kept) ReadAt(b []byte, off int64) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := k.open()
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
	f, err := k.open()
	if err != nil {
		return nil, err
	}
	if f == nil {
		return k.fsys.ReadFile(k.name)
	}
	b := make([]byte, 4096)
	for done := 0; ; {
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

// Close releases the descriptor; a later read opens the file again.
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
