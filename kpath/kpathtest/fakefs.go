// Package kpathtest holds an in-memory kpath.FS for package tests that need
// sysfs writes to fail with a chosen errno or to play the kernel's reaction.
package kpathtest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/kpath"
)

// FakeFS is an in-memory kpath.FS. Writes pop errors from WriteErrs[path]
// (nil lets the write through); a successful write replaces the file's
// content unless the path is in Frozen (the kernel "accepted" the write but
// nothing changed). Every write attempt is recorded.
type FakeFS struct {
	Files     map[string][]byte
	Dirs      map[string]bool
	WriteErrs map[string][]error
	ReadErrs  map[string]error
	Frozen    map[string]bool
	Writes    []Write
	// OnWrite plays the kernel after a successful write; OnReadAt runs
	// before each ReadAt (to let poison land a few reads late).
	OnWrite  func(path string, data []byte)
	OnReadAt func(path string)
}

// Write is one recorded write attempt.
type Write struct {
	Path string
	Data string
	Err  error
}

func New() *FakeFS {
	return &FakeFS{
		Files: map[string][]byte{}, Dirs: map[string]bool{},
		WriteErrs: map[string][]error{}, ReadErrs: map[string]error{}, Frozen: map[string]bool{},
	}
}

func (f *FakeFS) Set(path, content string) {
	f.Files[path] = []byte(content)
	for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
		f.Dirs[d] = true
	}
}

func (f *FakeFS) Mkdir(path string) {
	for d := path; d != "/" && d != "."; d = filepath.Dir(d) {
		f.Dirs[d] = true
	}
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (f *FakeFS) ReadFile(name string) ([]byte, error) {
	if err := f.ReadErrs[name]; err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	b, ok := f.Files[name]
	if !ok {
		return nil, notExist("open", name)
	}
	return bytes.Clone(b), nil
}

func (f *FakeFS) WriteFile(name string, data []byte) error {
	if _, ok := f.Files[name]; !ok {
		err := notExist("open", name)
		f.Writes = append(f.Writes, Write{name, string(data), err})
		return err
	}
	var err error
	if q := f.WriteErrs[name]; len(q) > 0 {
		err, f.WriteErrs[name] = q[0], q[1:]
	}
	f.Writes = append(f.Writes, Write{name, string(data), err})
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	if f.OnWrite != nil {
		f.OnWrite(name, data)
	} else if !f.Frozen[name] {
		f.Files[name] = bytes.Clone(data)
	}
	return nil
}

func (f *FakeFS) ReadAt(name string, b []byte, off int64) (int, error) {
	if f.OnReadAt != nil {
		f.OnReadAt(name)
	}
	data, err := f.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return bytes.NewReader(data).ReadAt(b, off)
}

func (f *FakeFS) Stat(name string) (fs.FileInfo, error) {
	if b, ok := f.Files[name]; ok {
		return fileInfo{name: filepath.Base(name), size: int64(len(b))}, nil
	}
	if f.Dirs[name] {
		return fileInfo{name: filepath.Base(name), dir: true}, nil
	}
	return nil, notExist("stat", name)
}

func (f *FakeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !f.Dirs[name] {
		return nil, notExist("readdir", name)
	}
	seen := map[string]fs.DirEntry{}
	add := func(p string, dir bool) {
		if filepath.Dir(p) == name {
			seen[filepath.Base(p)] = fs.FileInfoToDirEntry(fileInfo{name: filepath.Base(p), dir: dir})
		}
	}
	for p := range f.Files {
		add(p, false)
	}
	for p := range f.Dirs {
		add(p, true)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		out = append(out, seen[n])
	}
	return out, nil
}

// WritesTo lists the data of every write attempt to paths ending in suffix.
func (f *FakeFS) WritesTo(suffix string) []string {
	var out []string
	for _, w := range f.Writes {
		if strings.HasSuffix(w.Path, suffix) {
			out = append(out, w.Data)
		}
	}
	return out
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (i fileInfo) Name() string { return i.name }
func (i fileInfo) Size() int64  { return i.size }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }

var _ kpath.FS = (*FakeFS)(nil)

// Keeping is a FakeFS that keeps descriptors (kpath.KeepOpener), as OS
// does for kernel files: a kept file reads and writes the FakeFS's content
// of the moment, with its errors and its OnWrite, so a test can run the
// same table through both ways. Opens counts the opens of each path.
type Keeping struct {
	*FakeFS
	Opens map[string]int
}

// NewKeeping wraps f.
func NewKeeping(f *FakeFS) *Keeping { return &Keeping{FakeFS: f, Opens: map[string]int{}} }

func (k *Keeping) OpenKept(name string, write bool) (kpath.KeptFile, error) {
	if _, ok := k.Files[name]; !ok {
		return nil, notExist("open", name)
	}
	k.Opens[name]++
	return keptFake{fs: k.FakeFS, name: name}, nil
}

type keptFake struct {
	fs   *FakeFS
	name string
}

func (f keptFake) ReadAt(b []byte, off int64) (int, error) { return f.fs.ReadAt(f.name, b, off) }

func (f keptFake) ReadOnce(b []byte, off int64) (int, error) {
	n, err := f.fs.ReadAt(f.name, b, off)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil // one read(2) gives what there is; the next says EOF
	}
	return n, err
}

func (f keptFake) WriteAt(b []byte, off int64) (int, error) {
	if off != 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrInvalid}
	}
	if err := f.fs.WriteFile(f.name, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (keptFake) Close() error { return nil }
