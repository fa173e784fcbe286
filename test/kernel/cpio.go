package kernel

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// Mode bits of the newc format (the same as stat's st_mode).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// cpioEntry is one member of a newc archive.
type cpioEntry struct {
	name         string // without leading slash
	mode         uint32 // type and permission bits
	data         []byte // file content or symlink target
	major, minor uint32 // device number of a character device
}

// Archive builds an uncompressed newc cpio, the format the kernel unpacks
// into its initramfs. Entries keep insertion order and parents are added
// on demand, so equal inputs give byte-identical archives (mtime 0).
type Archive struct {
	entries []cpioEntry
	seen    map[string]bool
}

func NewArchive() *Archive { return &Archive{seen: map[string]bool{}} }

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// Dir adds a directory and its missing parents.
func (a *Archive) Dir(name string) {
	name = clean(name)
	if name == "" || a.seen[name] {
		return
	}
	a.Dir(path.Dir(name))
	a.add(cpioEntry{name: name, mode: modeDir | 0o755})
}

// File adds a regular file with permission bits perm.
func (a *Archive) File(name string, data []byte, perm uint32) {
	name = clean(name)
	a.Dir(path.Dir(name))
	a.add(cpioEntry{name: name, mode: modeRegular | perm&0o7777, data: data})
}

// Symlink adds name pointing at target.
func (a *Archive) Symlink(name, target string) {
	name = clean(name)
	a.Dir(path.Dir(name))
	a.add(cpioEntry{name: name, mode: modeSymlink | 0o777, data: []byte(target)})
}

// CharDev adds a character device node; the kernel creates it while
// unpacking, so /dev/console exists before /init opens its stdio.
func (a *Archive) CharDev(name string, major, minor uint32) {
	name = clean(name)
	a.Dir(path.Dir(name))
	a.add(cpioEntry{name: name, mode: modeCharDev | 0o600, major: major, minor: minor})
}

// add replaces an earlier entry of the same name, so a scenario can
// override a default file.
func (a *Archive) add(e cpioEntry) {
	if a.seen[e.name] {
		for i := range a.entries {
			if a.entries[i].name == e.name {
				a.entries[i] = e
				return
			}
		}
	}
	a.seen[e.name] = true
	a.entries = append(a.entries, e)
}

// WriteTo writes the archive and its trailer.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriter(w)}
	for i, e := range a.entries {
		writeEntry(cw, uint32(i+1), e)
	}
	writeEntry(cw, 0, cpioEntry{name: "TRAILER!!!"})
	if cw.err == nil {
		cw.err = cw.w.(*bufio.Writer).Flush()
	}
	return cw.n, cw.err
}

func writeEntry(w *countingWriter, ino uint32, e cpioEntry) {
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
	io.WriteString(w, e.name)
	w.Write([]byte{0})
	w.pad4()
	w.Write(e.data)
	w.pad4()
}

// countingWriter tracks the offset (newc pads header+name and data to 4
// bytes) and keeps the first error so writeEntry stays linear.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countingWriter) pad4() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
