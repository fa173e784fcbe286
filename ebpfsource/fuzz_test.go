package ebpfsource

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/selfprotect/selfprotect/fault"
)

// FuzzHandle feeds arbitrary ring-buffer records through the decode path:
// whatever the kernel (or a bug in the probes) sends, handle must count it
// and never panic, and each event it sends must carry the eBPF source.
func FuzzHandle(f *testing.F) {
	s := decodeOnly(f)
	for kind := range uint32(numKinds) {
		raw := make([]byte, 128)
		binary.LittleEndian.PutUint32(raw, kind)
		f.Add(raw)
	}
	mce := make([]byte, s.formats[kindMCERecord].MinSize())
	binary.LittleEndian.PutUint32(mce, kindMCERecord)
	binary.LittleEndian.PutUint64(mce[24:], 0x9c00000000000090) // status of a corrected memory error
	f.Add(mce)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := make(chan fault.Event, 4)
		s.handle(t.Context(), raw, out)
		close(out)
		for ev := range out {
			// Events keep their record kind (ebpf:mc_event, ...), so the
			// daemon treats them as their tracefs twins.
			if !strings.HasPrefix(string(ev.Source), "ebpf:") {
				t.Fatalf("event with source %q", ev.Source)
			}
		}
	})
}
