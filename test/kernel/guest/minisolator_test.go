package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMCEAddr(t *testing.T) {
	tests := []struct {
		name string
		line string
		want uint64
		ok   bool
	}{
		{"6.12 record", "kworker/1:1-60 [001] ..... 15.032455: mce_record: CPU: 1, MCGc/s: 0/0, MC7: 9c00000000000090, IPID: 0000000000000000, ADDR: 0000000002a21040, MISC: 000000000000008c, SYND: 0000000000000000", 0x2a21040, true},
		{"last field", "mce_record: CPU: 1, ADDR: 00000000000ff000\n", 0xff000, true},
		{"no address", "mce_record: CPU: 1, ADDR: 0000000000000000, MISC: 0", 0, false},
		{"another event", "mc_event: 1 Corrected error", 0, false},
		{"garbage", "mce_record: ADDR: zz, MISC", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mceAddr(tt.line)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
