package mce

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/tracefs"
)

// The first record of each cell, as injections.md decodes it.
func TestFromTraceRealFirstRecords(t *testing.T) {
	tests := []struct {
		cell string
		want Record
	}{
		{"6.1-amd", Record{Status: 0x9c0000000008011b, Addr: 0x2ba2040, Misc: 0x8c, TSC: 0x84f08e5e0, Walltime: 1795609554,
			CPU: 1, CPUID: 0x60fb1, Bank: 4, CPUVendor: 2}},
		{"6.1-intel", Record{Status: 0x9c00000000000090, Addr: 0x29f9040, Misc: 0x8c, TSC: 0xee5cc606a, Walltime: 1795609520,
			CPU: 1, CPUID: 0x50654, Bank: 7, CPUVendor: 0}},
		{"6.12-amd", Record{Status: 0x9c0000000008011b, Addr: 0x2d94040, Misc: 0x8c, TSC: 0xa36f90d46, Walltime: 1795609518,
			CPU: 1, CPUID: 0x60fb1, Bank: 4, CPUVendor: 2, Microcode: 0x1000065}},
		{"6.12-intel", Record{Status: 0x9c00000000000090, Addr: 0x2a21040, Misc: 0x8c, TSC: 0x99ff4e5d9, Walltime: 1795609552,
			CPU: 1, CPUID: 0x50654, Bank: 7, CPUVendor: 0, Microcode: 0x1}},
	}
	for _, tc := range tests {
		t.Run(tc.cell, func(t *testing.T) {
			recs := realRecords(t, tc.cell)
			got, err := FromTrace(recs[0])
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// Every captured record: 3 memory errors on cpu 1, then 5 cache errors on
// cpu 2 (bank 1, status 0x9000000000000134, no address).
func TestFromTraceRealAllRecords(t *testing.T) {
	memory := map[string]struct {
		bank   uint8
		status uint64
		addrs  [3]uint64
	}{
		"6.1-amd":    {4, 0x9c0000000008011b, [3]uint64{0x2ba2040, 0x2ba2040, 0x2bcd040}},
		"6.1-intel":  {7, 0x9c00000000000090, [3]uint64{0x29f9040, 0x29f9040, 0x2aa6040}},
		"6.12-amd":   {4, 0x9c0000000008011b, [3]uint64{0x2d94040, 0x2d94040, 0x2c14040}},
		"6.12-intel": {7, 0x9c00000000000090, [3]uint64{0x2a21040, 0x2a21040, 0x2a16040}},
	}
	for _, cell := range cells {
		t.Run(cell, func(t *testing.T) {
			recs := realRecords(t, cell)
			require.Len(t, recs, 8)
			m := memory[cell]
			for i, rec := range recs {
				got, err := FromTrace(rec)
				require.NoError(t, err, "record %d", i)
				if i < 3 {
					require.Equal(t, uint32(1), got.CPU)
					require.Equal(t, m.bank, got.Bank)
					require.Equal(t, m.status, got.Status)
					require.Equal(t, m.addrs[i], got.Addr)
					require.Equal(t, uint64(0x8c), got.Misc)
				} else {
					require.Equal(t, uint32(2), got.CPU)
					require.Equal(t, uint8(1), got.Bank)
					require.Equal(t, uint64(0x9000000000000134), got.Status)
					require.Zero(t, got.Addr)
				}
			}
		})
	}
}

// formatWithout returns the 6.12 format with the named field's line removed.
func formatWithout(t *testing.T, field string) *tracefs.Format {
	t.Helper()
	p := filepath.Join("testdata", "6.12-amd", "mce_record.format")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	var kept []string
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, " "+field+";") {
			kept = append(kept, line)
		}
	}
	f, err := tracefs.ParseFormat(p, "mce", []byte(strings.Join(kept, "\n")))
	require.NoError(t, err)
	require.False(t, f.Has(field))
	return f
}

func TestFromTraceErrors(t *testing.T) {
	real := realRecords(t, "6.12-amd")[0]
	other := *real.Format
	other.Name = "mc_event"
	tests := []struct {
		name    string
		rec     *tracefs.Record
		want    string
		wantErr error
	}{
		{"nil record", nil, "without format", nil},
		{"no format", &tracefs.Record{Data: real.Data}, "without format", nil},
		{"other event", &tracefs.Record{Format: &other, Data: real.Data}, "mce:mc_event", ErrNotMCERecord},
		{"no status field", &tracefs.Record{Format: formatWithout(t, "status"), Data: real.Data}, `"status"`, tracefs.ErrNoField},
		{"no bank field", &tracefs.Record{Format: formatWithout(t, "bank"), Data: real.Data}, `"bank"`, tracefs.ErrNoField},
		{"no cpu field", &tracefs.Record{Format: formatWithout(t, "cpu"), Data: real.Data}, `"cpu"`, tracefs.ErrNoField},
		{"truncated", &tracefs.Record{Format: real.Format, Data: real.Data[:100]}, `"cpuid" at 100+4 beyond record`, nil},
		{"truncated before microcode", &tracefs.Record{Format: real.Format, Data: real.Data[:116]}, `"microcode"`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromTrace(tc.rec)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			if tc.wantErr != nil {
				require.True(t, errors.Is(err, tc.wantErr), "%v is not %v", err, tc.wantErr)
			}
		})
	}
}

// ppin and microcode are optional: a 6.12 record read through a format
// that lacks them still decodes, with zeros.
func TestFromTraceOptionalFields(t *testing.T) {
	real := realRecords(t, "6.12-intel")[0]
	for _, field := range []string{"ppin", "microcode"} {
		t.Run(field, func(t *testing.T) {
			got, err := FromTrace(&tracefs.Record{Format: formatWithout(t, field), Data: real.Data})
			require.NoError(t, err)
			require.Equal(t, uint64(0x9c00000000000090), got.Status)
			if field == "microcode" {
				require.Zero(t, got.Microcode)
			} else {
				require.Equal(t, uint32(1), got.Microcode)
			}
		})
	}
}
