package fault

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHexWritesWhatFmtWrites(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xf, 0x10, 0x2d94, 0xdeadbeef, 1 << 40, math.MaxUint64} {
		assert.Equal(t, fmt.Sprintf("%#x", v), Hex(v), "value %d", v)
	}
}

func TestPageNamesTheFrameInHex(t *testing.T) {
	for pfn, want := range map[uint64]Resource{0: "page:0x0", 0x2d94: "page:0x2d94", math.MaxUint64 >> 12: "page:0xfffffffffffff"} {
		assert.Equal(t, want, Page(pfn))
		got, err := want.PFN()
		assert.NoError(t, err)
		assert.Equal(t, pfn, got)
	}
}
