package pageoffline

import (
	"bytes"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// fakeFS is an in-memory kpath.FS. Writes pop errors from writeErrs[path]
// (nil lets the write through); a successful write replaces the file's
// content unless the path is in frozen (the kernel "accepted" the write but
// nothing changed). Every write attempt is recorded.
type fakeFS struct {
	files     map[string][]byte
	dirs      map[string]bool
	writeErrs map[string][]error
	readErrs  map[string]error
	frozen    map[string]bool
	writes    []fakeWrite
	// onWrite plays the kernel after a successful write; onReadAt runs
	// before each ReadAt (to let poison land a few reads late).
	onWrite  func(path string, data []byte)
	onReadAt func(path string)
}

type fakeWrite struct {
	path string
	data string
	err  error
}

func newFakeFS() *fakeFS {
	return &fakeFS{
		files: map[string][]byte{}, dirs: map[string]bool{},
		writeErrs: map[string][]error{}, readErrs: map[string]error{}, frozen: map[string]bool{},
	}
}

func (f *fakeFS) set(path, content string) {
	f.files[path] = []byte(content)
	for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
		f.dirs[d] = true
	}
}

func (f *fakeFS) mkdir(path string) {
	for d := path; d != "/" && d != "."; d = filepath.Dir(d) {
		f.dirs[d] = true
	}
}

func notExist(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (f *fakeFS) ReadFile(name string) ([]byte, error) {
	if err := f.readErrs[name]; err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	b, ok := f.files[name]
	if !ok {
		return nil, notExist("open", name)
	}
	return bytes.Clone(b), nil
}

func (f *fakeFS) WriteFile(name string, data []byte) error {
	if _, ok := f.files[name]; !ok {
		err := notExist("open", name)
		f.writes = append(f.writes, fakeWrite{name, string(data), err})
		return err
	}
	var err error
	if q := f.writeErrs[name]; len(q) > 0 {
		err, f.writeErrs[name] = q[0], q[1:]
	}
	f.writes = append(f.writes, fakeWrite{name, string(data), err})
	if err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	if f.onWrite != nil {
		f.onWrite(name, data)
	} else if !f.frozen[name] {
		f.files[name] = bytes.Clone(data)
	}
	return nil
}

func (f *fakeFS) ReadAt(name string, b []byte, off int64) (int, error) {
	if f.onReadAt != nil {
		f.onReadAt(name)
	}
	data, err := f.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return bytes.NewReader(data).ReadAt(b, off)
}

func (f *fakeFS) Stat(name string) (fs.FileInfo, error) {
	if b, ok := f.files[name]; ok {
		return fakeInfo{name: filepath.Base(name), size: int64(len(b))}, nil
	}
	if f.dirs[name] {
		return fakeInfo{name: filepath.Base(name), dir: true}, nil
	}
	return nil, notExist("stat", name)
}

func (f *fakeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !f.dirs[name] {
		return nil, notExist("readdir", name)
	}
	seen := map[string]fs.DirEntry{}
	add := func(p string, dir bool) {
		if filepath.Dir(p) == name {
			seen[filepath.Base(p)] = fs.FileInfoToDirEntry(fakeInfo{name: filepath.Base(p), dir: dir})
		}
	}
	for p := range f.files {
		add(p, false)
	}
	for p := range f.dirs {
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

// writesTo lists the data of every write attempt to paths ending in suffix.
func (f *fakeFS) writesTo(suffix string) []string {
	var out []string
	for _, w := range f.writes {
		if strings.HasSuffix(w.path, suffix) {
			out = append(out, w.data)
		}
	}
	return out
}

type fakeInfo struct {
	name string
	size int64
	dir  bool
}

func (i fakeInfo) Name() string { return i.name }
func (i fakeInfo) Size() int64  { return i.size }
func (i fakeInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return i.dir }
func (i fakeInfo) Sys() any           { return nil }
