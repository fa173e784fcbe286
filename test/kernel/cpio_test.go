package kernel

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// newcMember is one decoded member, for checking what Archive wrote.
type newcMember struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// readNewc is an independent decoder of the newc format.
func readNewc(t *testing.T, b []byte) []newcMember {
	t.Helper()
	var out []newcMember
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		require.GreaterOrEqual(t, len(b)-off, 110, "truncated header at %d", off)
		h := b[off : off+110]
		require.Equal(t, "070701", string(h[:6]), "magic at %d", off)
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			require.NoError(t, err)
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		off += 110
		name := string(b[off : off+int(namesize)-1])
		require.Equal(t, byte(0), b[off+int(namesize)-1], "name of %q not NUL-terminated", name)
		off += int(namesize)
		align()
		data := string(b[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "bytes after the trailer")
			return out
		}
		out = append(out, newcMember{name: name, mode: mode, data: data, major: rmaj, minor: rmin})
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	a := NewArchive()
	a.File("/bin/busybox", []byte("BB"), 0o755)
	a.Symlink("bin/sh", "busybox")
	a.CharDev("dev/console", 5, 1)
	a.File("scenario/policy.yaml", []byte("odd length!"), 0o644)
	a.File("scenario/policy.yaml", []byte("replaced"), 0o600)
	a.Dir("tmp")
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	require.Zero(t, buf.Len()%4)

	got := readNewc(t, buf.Bytes())
	var summary []string
	for _, m := range got {
		summary = append(summary, fmt.Sprintf("%s %o %q %d:%d", m.name, m.mode, m.data, m.major, m.minor))
	}
	require.Equal(t, []string{
		`bin 40755 "" 0:0`,
		`bin/busybox 100755 "BB" 0:0`,
		`bin/sh 120777 "busybox" 0:0`,
		`dev 40755 "" 0:0`,
		`dev/console 20600 "" 5:1`,
		`scenario 40755 "" 0:0`,
		`scenario/policy.yaml 100600 "replaced" 0:0`,
		`tmp 40755 "" 0:0`,
	}, summary)
}

func TestArchiveDeterministic(t *testing.T) {
	build := func() []byte {
		a := NewArchive()
		a.File("init", []byte("#!/bin/sh\n"), 0o755)
		a.File("lib/modules/x.ko", bytes.Repeat([]byte{1}, 4097), 0o644)
		var buf bytes.Buffer
		_, err := a.WriteTo(&buf)
		require.NoError(t, err)
		return buf.Bytes()
	}
	require.Equal(t, build(), build())
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, fmt.Errorf("disk full")
	}
	w.after -= len(p)
	return len(p), nil
}

func TestArchiveWriteError(t *testing.T) {
	a := NewArchive()
	a.File("big", bytes.Repeat([]byte{7}, 1<<16), 0o644)
	_, err := a.WriteTo(&failingWriter{after: 100})
	require.ErrorContains(t, err, "disk full")
}
