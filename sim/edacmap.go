package sim

import "fmt"

// DIMMLocation is where the simulator's fixed interleave puts a physical
// address.
//
// The map: memory is interleaved over all DIMMs in 1 MiB units (unit u goes
// to DIMM u mod nDIMMs, numbered controller-major); inside a DIMM a DRAM row
// is 32 KiB, so 8 consecutive 4 KiB pages of one interleave unit share a row.
// On a Zen part (SMCA) each DIMM is one UMC channel's only DIMM and has two
// ranks, chip selects 0 and 1, taking alternate MiBs of the DIMM.
type DIMMLocation struct {
	MC, DIMM int
	// CS is the chip select of the rank on a Zen part, -1 elsewhere.
	CS    int
	Label string
	Row   uint64
	Col   uint64
}

const (
	interleaveShift = 20 // 1 MiB
	rowShift        = 15 // 32 KiB rows
)

// Locate maps a physical address to its DIMM. It is only meaningful when
// the profile has EDAC.
func (p Profile) Locate(addr uint64) DIMMLocation {
	n := uint64(p.Controllers * p.DIMMsPerController)
	if n == 0 {
		return DIMMLocation{MC: -1, DIMM: -1, CS: -1}
	}
	unit := addr >> interleaveShift
	idx := unit % n
	inDIMM := (unit/n)<<interleaveShift | addr&(1<<interleaveShift-1)
	mc, dimm := int(idx)/p.DIMMsPerController, int(idx)%p.DIMMsPerController
	cs := -1
	if p.SMCA {
		cs = int(inDIMM>>interleaveShift) & 1
	}
	return DIMMLocation{
		MC: mc, DIMM: dimm, CS: cs,
		Label: p.entryLabel(mc, dimm, cs),
		Row:   inDIMM >> rowShift,
		Col:   (inDIMM >> 3) & 0x3ff,
	}
}

// dimmLabel follows the label style of each vendor's EDAC driver: skx_edac
// on Intel, a motherboard silk-screen style on AMD.
func (p Profile) dimmLabel(mc, dimm int) string {
	if p.CPU == "intel" {
		return fmt.Sprintf("CPU_SrcID#0_MC#%d_Chan#%d_DIMM#0", mc, dimm)
	}
	return fmt.Sprintf("DIMM_%c%d", 'A'+rune(mc%26), dimm+1)
}

// entryLabel is the dimm_label of DIMM dimm's rank cs (cs < 0: the DIMM's
// only entry).
func (p Profile) entryLabel(mc, dimm, cs int) string {
	if p.RankLabels {
		return fmt.Sprintf("mc#%dcsrow#%dchannel#%d", mc, max(cs, 0), dimm)
	}
	return p.dimmLabel(mc, dimm)
}

// ranks is how many EDAC entries (sysfs rankN, one per chip select) each
// DIMM has: amd64_edac lays a Zen part's memory out per rank, "csrow
// <chip select> channel <UMC>"; the other models have one dimmN per DIMM.
func (p Profile) ranks() int {
	if p.SMCA {
		return 2
	}
	return 1
}

// edacEntry is the sysfs directory, under mcN, of a DIMM's rank cs (0 when
// the profile has one entry per DIMM), and its dimm_location. amd64_edac
// numbers its entries csrow-major, as its layers are ordered.
func (p Profile) edacEntry(dimm, cs int) (dir, location string) {
	if p.SMCA {
		return fmt.Sprintf("rank%d", cs*p.DIMMsPerController+dimm), fmt.Sprintf("csrow %d channel %d ", cs, dimm)
	}
	return fmt.Sprintf("dimm%d", dimm), fmt.Sprintf("channel %d slot 0 ", dimm)
}

func (p Profile) mcName(mc int) string {
	if p.CPU == "intel" {
		return fmt.Sprintf("Skylake Socket#0 IMC#%d", mc)
	}
	return "F17h"
}

// dimmSizeMB splits memory evenly over the DIMMs.
func (p Profile) dimmSizeMB() int {
	n := p.Controllers * p.DIMMsPerController
	if n == 0 {
		return 0
	}
	return p.MemoryMB / n
}

// driverDetail is the mc_event driver_detail string; it carries the row so
// row rules can be exercised.
func (l DIMMLocation) driverDetail() string {
	return fmt.Sprintf("memory_controller:%d channel:%d row:0x%x col:0x%x bank:0x0 rank:0", l.MC, l.DIMM, l.Row, l.Col)
}
