package edac

import (
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
)

// failFS fails reads of paths ending in one of its suffixes with the given
// error, and passes everything else to the real filesystem.
type failFS struct {
	kpath.OS
	fail map[string]error
}

func (f failFS) ReadFile(name string) ([]byte, error) {
	for suffix, err := range f.fail {
		if strings.HasSuffix(name, suffix) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	return f.OS.ReadFile(name)
}

func (f failFS) ReadDir(name string) ([]fs.DirEntry, error) {
	for suffix, err := range f.fail {
		if strings.HasSuffix(name, suffix) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
	return f.OS.ReadDir(name)
}

// copyFixture copies testdata/<name> to a temporary directory the test may
// change, and returns its paths.
func copyFixture(t *testing.T, name string) (kpath.Paths, string) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS("testdata/"+name)))
	return kpath.Under(dir), dir
}

// writeAttr overwrites one sysfs attribute below <dir>/sys/devices/system/edac/mc.
func writeAttr(t *testing.T, dir, rel, value string) {
	t.Helper()
	path := dir + "/sys/devices/system/edac/mc/" + rel
	require.NoError(t, os.WriteFile(path, []byte(value+"\n"), 0o644))
}

// quietLog discards output; tests that check logging use logrus's test hook.
func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	return l
}
