package sim

import "fmt"

// DIMMLocation is where the simulator's fixed interleave puts a physical
// address.
//
// The map: memory is interleaved over all DIMMs in 1 MiB units (unit u goes
// to DIMM u mod nDIMMs, numbered controller-major); inside a DIMM a DRAM row
// is 32 KiB, so 8 consecutive 4 KiB pages of one interleave unit share a row.
type DIMMLocation struct {
	MC, DIMM int
	Label    string
	Row      uint64
	Col      uint64
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
		return DIMMLocation{MC: -1, DIMM: -1}
	}
	unit := addr >> interleaveShift
	idx := unit % n
	inDIMM := (unit/n)<<interleaveShift | addr&(1<<interleaveShift-1)
	mc, dimm := int(idx)/p.DIMMsPerController, int(idx)%p.DIMMsPerController
	return DIMMLocation{
		MC: mc, DIMM: dimm,
		Label: p.dimmLabel(mc, dimm),
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
