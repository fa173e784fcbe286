package replay

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// FuzzReadMcelog: any log gives records in time order or a *LineError,
// never a panic.
func FuzzReadMcelog(f *testing.F) {
	data, err := os.ReadFile("testdata/mcelog.log")
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(mcelogStart + "\nCPU 1 BANK 7\nTIME 5\nSTATUS 9c00000000000090\nCPUID Vendor AMD Family 25 Model 1 Step 1\n"))
	f.Fuzz(func(t *testing.T, log []byte) {
		recs, err := ReadMcelog("fuzz", bytes.NewReader(log), "h")
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) && !strings.Contains(err.Error(), "reading fuzz") {
				t.Fatalf("error %v is neither a line error nor a read error", err)
			}
			return
		}
		for i := 1; i < len(recs); i++ {
			if recs[i].Event.Received.Before(recs[i-1].Event.Received) {
				t.Fatal("records out of time order")
			}
		}
	})
}
