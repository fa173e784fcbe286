package replay

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseLine: any input gives a record or a *LineError naming line 1,
// never a panic; a parsed error line round-trips its time and host.
func FuzzParseLine(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	bad, _ := filepath.Glob("testdata/bad/*.jsonl")
	for _, name := range append(files, bad...) {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && line[0] != '#' {
				f.Add(append([]byte(nil), line...))
			}
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var rec Record
		err := ParseLine("fuzz", 1, line, &rec)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line != 1 || le.File != "fuzz" {
				t.Fatalf("error %v is not a line error for fuzz:1", err)
			}
			return
		}
		if rec.Host == "" {
			t.Fatal("parsed a record without a host")
		}
		if rec.IsHost {
			if err := rec.Spec.Validate(); err != nil {
				t.Fatalf("accepted an invalid host: %v", err)
			}
			return
		}
		ev := rec.Event
		if ev.Count < 1 || ev.Received.IsZero() || !ev.Received.Equal(ev.Recorded) {
			t.Fatalf("bad event from %q: %+v", line, ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev.Received.Format(time.RFC3339Nano)); err != nil {
			t.Fatal(err)
		}
	})
}
