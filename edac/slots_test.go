package edac

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

func TestSlots(t *testing.T) {
	ctrls := []Controller{
		{Index: 0, DIMMs: []DIMM{
			{Label: "CPU_SrcID#1_MC#0_Chan#2_DIMM#0", Location: "channel 2 slot 0"},
			{Label: "DIMM_A1", Location: "csrow 3 channel 1"},
			{Label: "P0_DIMM_X", Location: "memory 3"},
		}},
		{Index: 1, CSRows: []CSRow{{Index: 0, Channels: []Channel{{Index: 0, Label: "B0"}, {Index: 1, Label: "B1"}}}}},
	}
	require.Equal(t, []Slot{
		{MC: 0, Label: "CPU_SrcID#1_MC#0_Chan#2_DIMM#0", Socket: 1, Channel: 2, CSRow: fault.Unknown},
		{MC: 0, Label: "DIMM_A1", Socket: fault.Unknown, Channel: 1, CSRow: 3},
		{MC: 0, Label: "P0_DIMM_X", Socket: fault.Unknown, Channel: fault.Unknown, CSRow: fault.Unknown},
		{MC: 1, Label: "B0", Socket: fault.Unknown, Channel: 0, CSRow: 0},
		{MC: 1, Label: "B1", Socket: fault.Unknown, Channel: 1, CSRow: 0},
	}, Slots(ctrls))
}

// amd64_edac lays its UMC controllers out per rank, "csrow <chip select>
// channel <UMC>": each slot keeps both, so that an MCA record's chip
// select can pick one of the ranks a channel holds.
func TestSlotsAMD64Ranks(t *testing.T) {
	ctrls, err := ReadControllers(kpath.Under("testdata/amd64"), kpath.OS{})
	require.NoError(t, err)
	require.Equal(t, []Slot{
		{MC: 0, Label: "mc#0csrow#0channel#0", Socket: fault.Unknown, Channel: 0, CSRow: 0},
		{MC: 0, Label: "mc#0csrow#0channel#1", Socket: fault.Unknown, Channel: 1, CSRow: 0},
		{MC: 0, Label: "", Socket: fault.Unknown, Channel: 0, CSRow: 1},
	}, Slots(ctrls))
}
