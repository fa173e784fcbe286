package sim

import (
	"errors"
	"fmt"
)

// Profile describes the simulated machine.
type Profile struct {
	Kernel string `json:"kernel" yaml:"kernel"` // "6.1" or "6.12"
	CPU    string `json:"cpu" yaml:"cpu"`       // "amd" or "intel"
	CPUs   int    `json:"cpus,omitempty" yaml:"cpus"`
	// ThreadsPerCore > 1 gives SMT siblings: cpu c and c+cores share a
	// core, as Linux numbers them on most x86 servers. Default 1.
	ThreadsPerCore int `json:"threads_per_core,omitempty" yaml:"threads_per_core"`
	// MemoryMB sizes /proc/kpageflags and MemTotal.
	MemoryMB int `json:"memory_mb,omitempty" yaml:"memory_mb"`
	// EDAC binds a fake EDAC driver: mcN/dimmK directories exist and memory
	// errors are also reported as ras:mc_event.
	EDAC               bool `json:"edac,omitempty" yaml:"edac"`
	Controllers        int  `json:"controllers,omitempty" yaml:"controllers"`
	DIMMsPerController int  `json:"dimms_per_controller,omitempty" yaml:"dimms_per_controller"`
	// CEC builds in the kernel's corrected error collector (6.12 only):
	// debugfs ras/cec/ exists and corrected DRAM errors are consumed by it.
	CEC bool `json:"cec,omitempty" yaml:"cec"`
	// SMCA makes the AMD model a Zen part (Scalable MCA, family 0x19):
	// DRAM errors come from UMC banks whose MCA_IPID names the channel and
	// whose address is a normalized one the kernel does not use. CEC then
	// leaves them alone (amd_mce_usable_address: SMCA UMC addresses are
	// not usable without poison), so EDAC reports every one.
	SMCA bool `json:"smca,omitempty" yaml:"smca"`
	// RankLabels keeps amd64_edac's own labels on a Zen part, one per rank
	// ("mc#0csrow#1channel#2"), where by default both ranks of a DIMM
	// carry the DIMM's label as an administrator would set them.
	RankLabels bool `json:"rank_labels,omitempty" yaml:"rank_labels"`
	// FirmwareFirst makes memory errors reach the OS through firmware:
	// "ghes" (APEI GHES: ras:mc_event from ghes_edac and its counters, no
	// mce_record; needs edac) or "emca" (Intel eMCA: mce_record plus
	// ras:extlog_mem_event with the firmware's FRU text, and no mc_event).
	FirmwareFirst string `json:"firmware_first,omitempty" yaml:"firmware_first"`
	Isolated      []int  `json:"isolated,omitempty" yaml:"isolated"`
}

// Firmware-first modes.
const (
	FirmwareGHES = "ghes"
	FirmwareEMCA = "emca"
)

// ErrBadProfile is returned for a profile the simulator cannot build.
var ErrBadProfile = errors.New("bad simulator profile")

const (
	defaultCPUs        = 4
	defaultMemoryMB    = 1024
	defaultControllers = 2
	defaultDIMMs       = 2
	maxCPUs            = 256
	minMemoryMB        = 16
	maxMemoryMB        = 1 << 22 // 4 TiB: kpageflags stays a sparse file
)

// WithDefaults fills zero values and validates the result.
func (p Profile) WithDefaults() (Profile, error) {
	if p.Kernel == "" {
		p.Kernel = "6.12"
	}
	if p.CPU == "" {
		p.CPU = "intel"
	}
	if p.CPUs == 0 {
		p.CPUs = defaultCPUs
	}
	if p.ThreadsPerCore == 0 {
		p.ThreadsPerCore = 1
	}
	if p.MemoryMB == 0 {
		p.MemoryMB = defaultMemoryMB
	}
	if p.EDAC && p.Controllers == 0 {
		p.Controllers = defaultControllers
	}
	if p.EDAC && p.DIMMsPerController == 0 {
		p.DIMMsPerController = defaultDIMMs
	}
	return p, p.validate()
}

func (p Profile) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadProfile, fmt.Sprintf(format, a...))
	}
	switch {
	case p.Kernel != "6.1" && p.Kernel != "6.12":
		return bad("kernel %q: want 6.1 or 6.12", p.Kernel)
	case p.CPU != "amd" && p.CPU != "intel":
		return bad("cpu %q: want amd or intel", p.CPU)
	case p.CPUs < 1 || p.CPUs > maxCPUs:
		return bad("cpus %d: want 1..%d", p.CPUs, maxCPUs)
	case p.ThreadsPerCore < 1 || p.ThreadsPerCore > 8 || p.CPUs%p.ThreadsPerCore != 0:
		return bad("threads_per_core %d must be 1..8 and divide cpus %d", p.ThreadsPerCore, p.CPUs)
	case p.MemoryMB < minMemoryMB || p.MemoryMB > maxMemoryMB:
		return bad("memory_mb %d: want %d..%d", p.MemoryMB, minMemoryMB, maxMemoryMB)
	case p.SMCA && p.CPU != "amd":
		return bad("smca needs cpu amd")
	case p.RankLabels && (!p.SMCA || !p.EDAC):
		return bad("rank_labels needs smca and edac (amd64_edac labels ranks on Zen parts)")
	case p.FirmwareFirst != "" && p.FirmwareFirst != FirmwareGHES && p.FirmwareFirst != FirmwareEMCA:
		return bad("firmware_first %q: want ghes or emca", p.FirmwareFirst)
	case p.FirmwareFirst == FirmwareGHES && !p.EDAC:
		return bad("firmware_first ghes needs edac (ghes_edac reports the errors)")
	case p.FirmwareFirst == FirmwareEMCA && p.CPU != "intel":
		return bad("firmware_first emca needs cpu intel")
	case p.CEC && p.Kernel != "6.12":
		return bad("cec needs kernel 6.12 (the 6.1 captures have none)")
	case !p.EDAC && (p.Controllers != 0 || p.DIMMsPerController != 0):
		return bad("controllers/dimms_per_controller set without edac")
	case p.Controllers < 0 || p.Controllers > 64 || p.DIMMsPerController < 0 || p.DIMMsPerController > 64:
		return bad("controllers %d, dimms_per_controller %d: want 1..64", p.Controllers, p.DIMMsPerController)
	}
	seen := map[int]bool{}
	for _, c := range p.Isolated {
		if c < 0 || c >= p.CPUs {
			return bad("isolated cpu %d outside 0..%d", c, p.CPUs-1)
		}
		if seen[c] {
			return bad("isolated cpu %d listed twice", c)
		}
		seen[c] = true
	}
	return nil
}

// vendor holds what the MCE records of one CPU model carry, from the
// captured guests.
type vendor struct {
	cpuvendor  uint8 // X86_VENDOR_*: 0 Intel, 2 AMD
	cpuid      uint32
	microcode  uint32
	memBank    int
	memStatus  uint64 // corrected DRAM error
	memUEStat  uint64 // the same with UC (bit 61) set
	memMisc    uint64
	banks      int
	cecActions uint64 // CEC action_threshold seen in the lab
}

var (
	vendorAMD = vendor{cpuvendor: 2, cpuid: 0x60fb1, microcode: 0x1000065, memBank: 4,
		memStatus: 0x9c0000000008011b, memUEStat: 0xbc0000000008011b, memMisc: 0x8c, banks: 10, cecActions: 1023}
	vendorIntel = vendor{cpuvendor: 0, cpuid: 0x50654, microcode: 0x1, memBank: 7,
		memStatus: 0x9c00000000000090, memUEStat: 0xbc00000000000090, memMisc: 0x8c, banks: 10, cecActions: 2}
	// Zen 4 (family 0x19): UMC bank status with CECC (bit 46) or UECC (bit
	// 45), SyndV (bit 53), DRAM ECC extended code 0 and MCACOD 0x011b.
	vendorZen = vendor{cpuvendor: 2, cpuid: 0x00a10f11, microcode: 0xa101148, memBank: 15,
		memStatus: 0x9c2040000000011b, memUEStat: 0xbc2020000000011b, banks: 23, cecActions: 1023}
)

// statusSyndV is MCA_STATUS bit 53 on SMCA: MCA_SYND holds the syndrome
// and, for a UMC, the chip select.
const statusSyndV = uint64(1) << 53

// umcIPID is a UMC bank's MCA_IPID: HWID 0x96, McaType 0, and the
// instance whose bits 31:20 the kernel reads as the UMC channel.
func umcIPID(channel int) uint64 { return 0x0000009600050f00 | uint64(channel&0xfff)<<20 }

// Cache errors are the same on both models in the captures.
const (
	cacheBank   = 1
	cacheStatus = 0x9000000000000134
)

func (p Profile) vendor() vendor {
	if p.SMCA {
		return vendorZen
	}
	if p.CPU == "amd" {
		return vendorAMD
	}
	return vendorIntel
}

// pages is the number of 4 KiB frames of the machine.
func (p Profile) pages() uint64 { return uint64(p.MemoryMB) << 8 }

func (p Profile) cores() int { return p.CPUs / p.ThreadsPerCore }

// siblings lists the SMT siblings of cpu, itself included.
func (p Profile) siblings(cpu int) []int {
	var out []int
	for c := cpu % p.cores(); c < p.CPUs; c += p.cores() {
		out = append(out, c)
	}
	return out
}
