package mce

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

var received = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func TestToEvent(t *testing.T) {
	r := with(intelRec(7, 0x9c00000000000090, 0x2a21040, 0x8c), func(r *Record) {
		r.CPU, r.SocketID, r.Synd, r.IPID, r.Walltime = 5, 1, 0x77, 0x88, 1795609552
	})
	d := Decode(r)
	ev := ToEvent(r, d, received, fault.SourceEBPF)

	require.Equal(t, received, ev.Received)
	require.Equal(t, time.Unix(1795609552, 0).UTC(), ev.Recorded)
	require.Equal(t, fault.SourceEBPF, ev.Source)
	require.Equal(t, uint32(1), ev.Count)
	require.Equal(t, 5, ev.CPU)
	require.Equal(t, 1, ev.Socket)
	require.Equal(t, 7, ev.Bank)
	require.Equal(t, fault.VendorIntel, ev.Vendor)
	require.Equal(t, fault.ClassMemory, ev.Class)
	require.Equal(t, fault.SeverityCorrected, ev.Severity)
	require.Equal(t, fault.Unknown, ev.CacheLevel)
	require.False(t, ev.CoreBank)
	require.Equal(t, [5]uint64{0x9c00000000000090, 0x2a21040, 0x8c, 0x77, 0x88}, [5]uint64{ev.Status, ev.Addr, ev.Misc, ev.Synd, ev.IPID})
	require.True(t, ev.AddrValid)
	require.Equal(t, uint64(0x2a21000), ev.PhysAddr)
	require.Equal(t, uint8(12), ev.AddrLSB)
	require.Equal(t, uint64(0x2a21), ev.PFN())
	require.Equal(t, d.Summary, ev.Detail)
	// Fields an MCE cannot know stay unknown.
	require.Equal(t, fault.Unknown, ev.MC)
	require.Equal(t, [3]int{fault.Unknown, fault.Unknown, fault.Unknown}, ev.Layers)
}

func TestToEventUnusableAddressAndNoWalltime(t *testing.T) {
	r := intelRec(7, 0x9c00000000000090, 0x2a21040, 0x4c) // segment-offset mode
	ev := ToEvent(r, Decode(r), received, fault.SourceTraceMCE)
	require.False(t, ev.AddrValid)
	require.Zero(t, ev.PhysAddr)
	require.Equal(t, uint64(0x2a21040), ev.Addr, "the raw register is kept")
	require.True(t, ev.Recorded.IsZero())

	c := intelRec(1, 0x9000000000000134, 0, 0)
	ev = ToEvent(c, Decode(c), received, fault.SourceTraceMCE)
	require.Equal(t, fault.ClassCache, ev.Class)
	require.Equal(t, 0, ev.CacheLevel)
	require.True(t, ev.CoreBank)
}

func TestTraceDecoderRealCaptures(t *testing.T) {
	pages := map[string][3]uint64{ // expected PFNs of the 3 memory errors
		"6.1-amd":    {0x2ba2, 0x2ba2, 0x2bcd},
		"6.1-intel":  {0x29f9, 0x29f9, 0x2aa6},
		"6.12-amd":   {0x2d94, 0x2d94, 0x2c14},
		"6.12-intel": {0x2a21, 0x2a21, 0x2a16},
	}
	for _, cell := range cells {
		t.Run(cell, func(t *testing.T) {
			for i, rec := range realRecords(t, cell) {
				// The buffer a record sits in must not matter.
				rec.BufferCPU = 3
				evs, err := TraceDecoder(rec, received)
				require.NoError(t, err)
				require.Len(t, evs, 1)
				ev := evs[0]
				require.Equal(t, fault.SourceTraceMCE, ev.Source)
				require.Equal(t, received, ev.Received)
				require.False(t, ev.Recorded.IsZero())
				require.Equal(t, fault.SeverityCorrected, ev.Severity)
				if i < 3 {
					require.Equal(t, 1, ev.CPU)
					require.Equal(t, fault.ClassMemory, ev.Class)
					require.True(t, ev.AddrValid)
					require.Equal(t, pages[cell][i], ev.PFN())
				} else {
					require.Equal(t, 2, ev.CPU)
					require.Equal(t, 1, ev.Bank)
					require.Equal(t, fault.ClassCache, ev.Class)
					require.True(t, ev.CoreBank)
					require.Equal(t, 0, ev.CacheLevel)
					require.False(t, ev.AddrValid)
				}
			}
		})
	}
}

func TestTraceDecoderErrors(t *testing.T) {
	real := realRecords(t, "6.1-intel")[0]
	_, err := TraceDecoder(&tracefs.Record{Format: real.Format, Data: real.Data[:50]}, received)
	require.ErrorContains(t, err, "mce_record")

	// A status without VAL: the bank held nothing.
	data := append([]byte(nil), real.Data...)
	fld, ok := real.Format.Field("status")
	require.True(t, ok)
	data[fld.Offset+7] &^= 0x80
	evs, err := TraceDecoder(&tracefs.Record{Format: real.Format, Data: data}, received)
	require.ErrorIs(t, err, ErrInvalidStatus)
	require.Nil(t, evs)
}

// TraceDecoder must keep the signature the tracefs source dispatches to.
var _ tracefs.Decoder = TraceDecoder
