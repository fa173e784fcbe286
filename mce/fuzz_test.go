package mce

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

func FuzzDecode(f *testing.F) {
	f.Add(uint64(0x9c0000000008011b), uint64(0x2ba2040), uint64(0x8c), uint64(0), uint64(0), uint8(4), uint8(2), uint32(cpuidQEMU64))
	f.Add(uint64(0x9c00000000000090), uint64(0x2a21040), uint64(0x8c), uint64(0), uint64(0), uint8(7), uint8(0), uint32(cpuidIntelSKX))
	f.Add(uint64(0x9000000000000134), uint64(0), uint64(0), uint64(0), uint64(0), uint8(1), uint8(0), uint32(cpuidIntelSKX))
	f.Add(uint64(0xb400080000000135), uint64(0x0c00000123456789), uint64(0), uint64(ipidLS), uint64(0), uint8(0), uint8(2), uint32(cpuidMilan))
	f.Add(uint64(0x9c2040000000011b), uint64(0xff00000000000000), uint64(0), uint64(ipidUMC), uint64(0x1000c14), uint8(15), uint8(9), uint32(cpuidHygon))
	f.Add(^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), uint8(255), uint8(255), ^uint32(0))
	f.Fuzz(func(t *testing.T, status, addr, misc, ipid, mcgcap uint64, bank, vendor uint8, cpuid uint32) {
		r := Record{Status: status, Addr: addr, Misc: misc, IPID: ipid, MCGCap: mcgcap, Bank: bank, CPUVendor: vendor, CPUID: cpuid}
		d := Decode(r)
		require.LessOrEqual(t, d.Severity, fault.SeverityFatal)
		require.LessOrEqual(t, d.Class, fault.ClassPCIe)
		require.Contains(t, []int{fault.Unknown, 0, 1, 2}, d.CacheLevel)
		require.NotEmpty(t, d.BankKind)
		require.NotEmpty(t, d.Summary)
		if d.CoreBank {
			require.GreaterOrEqual(t, d.CacheLevel, 0)
		}
		if d.AddrUsable {
			require.True(t, d.AddrValid)
			require.LessOrEqual(t, d.AddrLSB, uint8(12))
		}
		if !d.Uncorrected {
			require.Contains(t, []fault.Severity{fault.SeverityCorrected, fault.SeverityDeferred}, d.Severity)
		}
		if d.Uncorrected && d.PCC {
			require.Equal(t, fault.SeverityFatal, d.Severity)
		}
		ev := ToEvent(r, d, received, fault.SourceTraceMCE)
		if ev.AddrValid {
			require.LessOrEqual(t, ev.AddrLSB, uint8(12))
		}
	})
}

func FuzzFromTrace(f *testing.F) {
	formats := []*tracefs.Format{loadFormat(f, "6.1-amd"), loadFormat(f, "6.12-intel")}
	for i, cell := range []string{"6.1-amd", "6.12-intel"} {
		for _, rec := range realRecords(f, cell) {
			f.Add(uint8(i), append([]byte(nil), rec.Data...))
		}
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), make([]byte, 119))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		format := formats[int(which)%len(formats)]
		rec := &tracefs.Record{Format: format, Data: data}
		r, err := FromTrace(rec)
		if err != nil {
			require.Equal(t, Record{}, r, "a failed read returns no partial record")
			return
		}
		// What was read must be what the format says is there.
		st, err := rec.Uint("status")
		require.NoError(t, err)
		require.Equal(t, st, r.Status)
		bank, err := rec.Uint("bank")
		require.NoError(t, err)
		require.Equal(t, uint8(bank), r.Bank)
		require.GreaterOrEqual(t, len(data), format.MinSize())
		evs, err := TraceDecoder(rec, received)
		if err == nil {
			require.Len(t, evs, 1)
			require.Equal(t, int(r.CPU), evs[0].CPU)
		} else {
			require.ErrorIs(t, err, ErrInvalidStatus)
		}
	})
}
