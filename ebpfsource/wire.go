package ebpfsource

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"

	"github.com/selfprotect/selfprotect/tracefs"
)

// Wire record kinds: the first u32 of every ring-buffer record (enum sp_kind
// in bpf/probes.c).
const (
	kindNotice        = 0
	kindMCERecord     = 1
	kindMCEvent       = 2
	kindMemoryFailure = 3
	kindExtlogMem     = 4
	kindAER           = 5
	numKinds          = 6
)

// headerSize is sp_kind + sp_cpu, the start of every wire record.
const headerSize = 8

// aggHeadSize is struct sp_agg_head: the key's last record follows it.
const aggHeadSize = 32

// probe ties one tracepoint to its program, its wire record and its
// aggregation map in the object.
type probe struct {
	kind        uint32
	group, name string // the tracepoint
	program     string
	wire        string // BTF name of the wire record struct
	aggMap      string
}

// Key is the decoder key, "system/name", as the tracefs source uses.
func (p probe) Key() string { return p.group + "/" + p.name }

var probes = []probe{
	{kindMCERecord, "mce", "mce_record", probesProgMceRecord, "sp_mce_record", probesMapMceAgg},
	{kindMCEvent, "ras", "mc_event", probesProgMcEvent, "sp_mc_event", probesMapMcAgg},
	{kindMemoryFailure, "ras", "memory_failure_event", probesProgMemoryFailureEvent, "sp_memory_failure_event", probesMapMfAgg},
	{kindExtlogMem, "ras", "extlog_mem_event", probesProgExtlogMemEvent, "sp_extlog_mem_event", probesMapExtlogAgg},
	{kindAER, "ras", "aer_event", probesProgAerEvent, "sp_aer_event", probesMapAerAgg},
}

// Probes lists the tracepoints this source can attach to, as "system/name".
func Probes() []string {
	out := make([]string, len(probes))
	for i, p := range probes {
		out[i] = p.Key()
	}
	return out
}

// wireFormats describes each probe's wire record as a tracefs format, built
// from the object's BTF. The wire structs name their members after the
// tracepoint's fields, so the decoders written for tracefs records (mce/,
// edac/) read eBPF records through the same field names and an eBPF event
// equals the tracefs one for the same record. Building the layout from BTF
// leaves the C struct as the one place that defines it.
func wireFormats(types *btf.Spec) (map[uint32]*tracefs.Format, error) {
	if types == nil {
		return nil, errors.New("object has no BTF")
	}
	out := make(map[uint32]*tracefs.Format, len(probes))
	for _, p := range probes {
		var st *btf.Struct
		if err := types.TypeByName(p.wire, &st); err != nil {
			return nil, fmt.Errorf("wire record %s: %w", p.wire, err)
		}
		text, err := formatText(p, st)
		if err != nil {
			return nil, err
		}
		f, err := tracefs.ParseFormat("btf:"+p.wire, p.group, []byte(text))
		if err != nil {
			return nil, fmt.Errorf("wire record %s: %w", p.wire, err)
		}
		out[p.kind] = f
	}
	return out, nil
}

// formatText writes st as the text of a tracefs format file.
func formatText(p probe, st *btf.Struct) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nID: %d\nformat:\n", p.name, p.kind)
	for _, m := range st.Members {
		if m.BitfieldSize != 0 || m.Offset%8 != 0 {
			return "", fmt.Errorf("wire record %s: member %s is a bitfield", p.wire, m.Name)
		}
		decl, size, signed, err := memberDecl(m)
		if err != nil {
			return "", fmt.Errorf("wire record %s: %w", p.wire, err)
		}
		sign := 0
		if signed {
			sign = 1
		}
		fmt.Fprintf(&b, "\tfield:%s;\toffset:%d;\tsize:%d;\tsigned:%d;\n", decl, m.Offset.Bytes(), size, sign)
	}
	return b.String(), nil
}

// memberDecl returns a member's C declaration in tracefs style ("u64 addr",
// "char msg[80]"), its size and signedness. Only integers and arrays of
// integers occur in wire records.
func memberDecl(m btf.Member) (decl string, size int, signed bool, err error) {
	switch t := btf.UnderlyingType(m.Type).(type) {
	case *btf.Int:
		return intName(t) + " " + m.Name, int(t.Size), t.Encoding&btf.Signed != 0, nil
	case *btf.Array:
		elem, ok := btf.UnderlyingType(t.Type).(*btf.Int)
		if !ok {
			return "", 0, false, fmt.Errorf("member %s: array of %s, want integers", m.Name, t.Type)
		}
		return fmt.Sprintf("%s %s[%d]", intName(elem), m.Name, t.Nelems), int(elem.Size * t.Nelems), false, nil
	}
	return "", 0, false, fmt.Errorf("member %s: type %s is not an integer or an array of them", m.Name, m.Type)
}

func intName(t *btf.Int) string {
	if t.Encoding&btf.Char != 0 || t.Name == "char" {
		return "char"
	}
	if t.Encoding&btf.Signed != 0 {
		return fmt.Sprintf("s%d", t.Size*8)
	}
	return fmt.Sprintf("u%d", t.Size*8)
}
