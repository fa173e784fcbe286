package ebpfsource

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/kpath/kpathtest"
	"github.com/selfprotect/selfprotect/tracefs"
)

// These tests parse the embedded object without loading it: no privilege,
// no BPF in the kernel.

func TestObjectProgramsAttachWhereTheTableSays(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	require.Len(t, spec.Programs, len(probes), "one program per probe, no strays")
	for _, p := range probes {
		t.Run(p.Key(), func(t *testing.T) {
			ps, ok := spec.Programs[p.program]
			require.True(t, ok, "no program %s", p.program)
			require.Equal(t, "tracepoint/"+p.Key(), ps.SectionName)
			require.Equal(t, ebpf.TracePoint, ps.Type)
			require.Equal(t, "GPL", ps.License, "the probes call GPL-only helpers")
		})
	}
}

// Every field read must be a CO-RE relocation against the kernel's
// trace_event_raw_* type: a fixed offset compiled for 6.12 is refused on
// 6.1, whose mce_record lays fields out differently.
func TestObjectReadsTracepointFieldsThroughCORE(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	for _, p := range probes {
		t.Run(p.Key(), func(t *testing.T) {
			var relos []string
			for i := range spec.Programs[p.program].Instructions {
				if r := btf.CORERelocationMetadata(&spec.Programs[p.program].Instructions[i]); r != nil {
					relos = append(relos, r.String())
				}
			}
			ctxType := "trace_event_raw_" + p.name
			n := 0
			for _, r := range relos {
				if strings.Contains(r, ctxType) {
					n++
				}
			}
			require.GreaterOrEqual(t, n, 3, "CO-RE relocations on %s, got %v", ctxType, relos)
		})
	}
}

// ppin and microcode exist from 6.12 on: the program must ask before
// reading them, or CO-RE fails on 6.1.
func TestMCERecordAsksWhetherNewFieldsExist(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	var exists []string
	for i := range spec.Programs[probesProgMceRecord].Instructions {
		r := btf.CORERelocationMetadata(&spec.Programs[probesProgMceRecord].Instructions[i])
		if r != nil && strings.Contains(r.String(), "field_exists") {
			exists = append(exists, r.String())
		}
	}
	require.Len(t, exists, 2, "field_exists relocations: %v", exists)
}

func TestObjectMaps(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	ev := spec.Maps[probesMapEvents]
	require.NotNil(t, ev)
	require.Equal(t, ebpf.RingBuf, ev.Type)
	st := spec.Maps[probesMapStats]
	require.NotNil(t, st)
	require.Equal(t, ebpf.PerCPUArray, st.Type)
	require.EqualValues(t, numKinds, st.MaxEntries, "one counter row per kind")

	for _, p := range probes {
		m := spec.Maps[p.aggMap]
		require.NotNil(t, m, p.aggMap)
		require.Equal(t, ebpf.Hash, m.Type, p.aggMap)
		require.EqualValues(t, 24, m.KeySize, "%s: struct sp_key", p.aggMap)
		var wire *btf.Struct
		require.NoError(t, spec.Types.TypeByName(p.wire, &wire))
		require.EqualValues(t, aggHeadSize+wire.Size, m.ValueSize, "%s: head then the last %s", p.aggMap, p.wire)
	}
	for _, v := range []string{probesVarKeyLimit, probesVarKeyWindowNs} {
		vs, ok := spec.Variables[v]
		require.True(t, ok, v)
		require.Equal(t, ".rodata", vs.SectionName, "%s is set before load and frozen", v)
	}
}

// The Go mirror of the aggregation head must match the C one: the sweep
// reads the error total at a fixed offset.
func TestAggHeadLayout(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	var head *btf.Struct
	require.NoError(t, spec.Types.TypeByName("sp_agg_head", &head))
	require.EqualValues(t, aggHeadSize, head.Size)
	offs := map[string]uint32{}
	for _, m := range head.Members {
		offs[m.Name] = m.Offset.Bytes()
	}
	require.EqualValues(t, 16, offs["errors"], "sweep reads errors at val[16:]")
}

// kernelFormat reads a tracefs format file captured from a real kernel.
func kernelFormat(t *testing.T, series string, p probe) *tracefs.Format {
	t.Helper()
	path := filepath.Join("testdata", "ras", series, p.name+".format")
	if p.group == "mce" {
		path = filepath.Join("testdata", series+"-amd", "mce_record.format")
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := tracefs.ParseFormat(path, p.group, data)
	require.NoError(t, err)
	return f
}

// notCopied are kernel fields the wire records leave out, and why.
var notCopied = map[string]string{
	// struct cper_mem_err_compact: no decoder reads it yet.
	"extlog_mem_event/data": "CPER detail not carried",
}

// The decoders read records by field name. Every field of the real
// kernels' formats must be in the wire record under the same name (with
// the same width for integers; a __data_loc string becomes an inline
// array), and the wire record must invent no name of its own outside sp_*.
func TestWireRecordsCarryEveryKernelField(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	wire, err := wireFormats(spec.Types)
	require.NoError(t, err)
	for _, series := range []string{"6.1", "6.12"} {
		for _, p := range probes {
			t.Run(series+"/"+p.Key(), func(t *testing.T) {
				kf := kernelFormat(t, series, p)
				wf := wire[p.kind]
				for _, kfld := range kf.Fields {
					if strings.HasPrefix(kfld.Name, "common_") || notCopied[p.name+"/"+kfld.Name] != "" {
						continue
					}
					wfld, ok := wf.Field(kfld.Name)
					require.True(t, ok, "wire record lacks %s", kfld.Name)
					switch {
					case kfld.DataLoc:
						require.True(t, wfld.Array, "%s: string must be an inline array", kfld.Name)
					case kfld.Array:
						require.True(t, wfld.Array, kfld.Name)
						require.Equal(t, kfld.Size, wfld.Size, kfld.Name)
					default:
						require.Equal(t, kfld.Size, wfld.Size, "%s: width", kfld.Name)
					}
				}
				if series != "6.12" {
					return
				}
				for _, wfld := range wf.Fields {
					if strings.HasPrefix(wfld.Name, "sp_") {
						continue
					}
					require.True(t, kf.Has(wfld.Name), "wire field %s is not a field of %s", wfld.Name, p.Key())
				}
			})
		}
	}
}

func TestWireFormatRejectsWhatItCannotDescribe(t *testing.T) {
	u8 := &btf.Int{Name: "u8", Size: 1}
	nested := &btf.Struct{Name: "inner", Size: 1, Members: []btf.Member{{Name: "x", Type: u8}}}
	cases := []struct {
		name string
		st   *btf.Struct
		want string
	}{
		{"nested struct", &btf.Struct{Name: "w", Size: 1, Members: []btf.Member{{Name: "in", Type: nested}}}, "member in: type"},
		{"bitfield", &btf.Struct{Name: "w", Size: 1, Members: []btf.Member{{Name: "b", Type: u8, BitfieldSize: 3}}}, "member b is a bitfield"},
		{"array of structs", &btf.Struct{Name: "w", Size: 1, Members: []btf.Member{{Name: "a", Type: &btf.Array{Type: nested, Nelems: 1}}}}, "member a: array of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := formatText(probes[0], c.st)
			require.ErrorContains(t, err, c.want)
		})
	}
}

func TestOpenIsNotSupported(t *testing.T) {
	kernel := kpath.Default()
	kernel.Tracing = "/sys/kernel/tracing"
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		// The simulator's tree: attaching would watch the host kernel.
		{"another tracing root", Config{Paths: kpath.Under(t.TempDir())}, "is not the running kernel's tracefs"},
		{"no tracepoint", Config{Paths: kernel, FS: kpathtest.New()}, "no RAS tracepoint"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(c.cfg)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrNotSupported), "want ErrNotSupported, got %v", err)
			require.ErrorContains(t, err, c.want)
		})
	}
}

func TestOpenRejectsABadRingSize(t *testing.T) {
	for _, n := range []uint32{1000, 4095, 12288} {
		_, err := Open(Config{Paths: kpath.Under(t.TempDir()), RingBytes: n})
		require.ErrorContains(t, err, "want a power of two", "ring of %d bytes", n)
	}
}

func ExampleProbes() {
	fmt.Println(strings.Join(Probes(), " "))
	// Output: mce/mce_record ras/mc_event ras/memory_failure_event ras/extlog_mem_event ras/aer_event
}

// The formats are built from BTF by our own code; bpf2go lays out the same
// structs independently. Field by field, offset and size must agree, or the
// decoders would read the wrong bytes.
func TestWireFormatsMatchGeneratedLayouts(t *testing.T) {
	spec, err := loadProbes()
	require.NoError(t, err)
	wire, err := wireFormats(spec.Types)
	require.NoError(t, err)
	gen := map[uint32]any{
		kindMCERecord: probesSpMceRecord{}, kindMCEvent: probesSpMcEvent{}, kindMemoryFailure: probesSpMemoryFailureEvent{},
		kindExtlogMem: probesSpExtlogMemEvent{}, kindAER: probesSpAerEvent{},
	}
	for _, p := range probes {
		t.Run(p.Key(), func(t *testing.T) {
			typ := reflect.TypeOf(gen[p.kind])
			var fields []reflect.StructField
			for i := range typ.NumField() {
				if f := typ.Field(i); f.Name != "_" {
					fields = append(fields, f)
				}
			}
			wf := wire[p.kind]
			require.Len(t, wf.Fields, len(fields))
			for i, f := range fields {
				require.EqualValues(t, f.Offset, wf.Fields[i].Offset, "%s/%s offset", wf.Fields[i].Name, f.Name)
				require.EqualValues(t, f.Type.Size(), wf.Fields[i].Size, "%s/%s size", wf.Fields[i].Name, f.Name)
				require.Equal(t, strings.ReplaceAll(wf.Fields[i].Name, "_", ""), strings.ToLower(f.Name))
			}
			require.EqualValues(t, typ.Size(), wf.MinSize(), "no trailing padding in a wire record")
		})
	}
}
