package mce

// Bank kinds reported in Decoded.BankKind.
const (
	BankCore             = "core"              // private to one core (Intel 0–3, legacy AMD 0–3, SMCA core types)
	BankL3               = "l3"                // shared last-level cache
	BankMemoryController = "memory-controller" // Intel integrated memory controller
	BankNorthbridge      = "northbridge"       // legacy AMD bank 4: DRAM controller, HyperTransport, L3
	BankUMC              = "umc"               // AMD SMCA unified memory controller
	BankDataFabric       = "data-fabric"       // AMD SMCA coherent slave, PIE
	BankUncore           = "uncore"            // everything else on the package
	BankUnknown          = "unknown"           // an SMCA IPID we do not know, or no vendor
)

// smcaBank is one entry of the kernel's smca_hwid_mcatypes table
// (arch/x86/kernel/cpu/mce/amd.c): a (HWID, McaType) pair read from
// MCA_IPID names the block behind the bank.
type smcaBank struct {
	hwid, mcaType uint16
	name          string
	kind          string
}

// smcaBanks lists the known SMCA bank types. Numbers from the kernel's
// table; names are the kernel's sysfs names.
var smcaBanks = []smcaBank{
	{0xB0, 0x0, "load-store", BankCore},
	{0xB0, 0x10, "load-store", BankCore},
	{0xB0, 0x1, "instruction-fetch", BankCore},
	{0xB0, 0x2, "l2-cache", BankCore},
	{0xB0, 0x3, "decode-unit", BankCore},
	{0xB0, 0x5, "execution-unit", BankCore},
	{0xB0, 0x6, "floating-point", BankCore},
	{0xB0, 0x7, "l3-cache", BankL3},
	{0x2E, 0x0, "coherent-slave", BankDataFabric},
	{0x2E, 0x1, "pie", BankDataFabric},
	{0x2E, 0x2, "coherent-slave", BankDataFabric},
	{0x2E, 0x4, "ma-llc", BankL3},
	{0x96, 0x0, "umc", BankUMC},
	{0x96, 0x1, "umc-v2", BankUMC},
	{0x05, 0x0, "parameter-block", BankUncore},
	{0xFF, 0x0, "psp", BankUncore},
	{0xFF, 0x1, "psp", BankUncore},
	{0x01, 0x0, "smu", BankUncore},
	{0x01, 0x1, "smu", BankUncore},
	{0x01, 0x2, "mp5", BankUncore},
	{0x01, 0x3, "mpdma", BankUncore},
	{0x18, 0x0, "nbio", BankUncore},
	{0x46, 0x0, "pcie", BankUncore},
	{0x46, 0x1, "pcie", BankUncore},
	{0x50, 0x0, "xgmi-pcs", BankUncore},
	{0x6C, 0x0, "nbif", BankUncore},
	{0x80, 0x0, "shub", BankUncore},
	{0xA8, 0x0, "sata", BankUncore},
	{0xAA, 0x0, "usb", BankUncore},
	{0x170, 0x0, "usr-dp", BankUncore},
	{0x180, 0x0, "usr-cp", BankUncore},
	{0x241, 0x0, "gmi-pcs", BankUncore},
	{0x259, 0x0, "xgmi-phy", BankUncore},
	{0x267, 0x0, "wafl-phy", BankUncore},
	{0x269, 0x0, "gmi-phy", BankUncore},
}

// IPIDHWID and IPIDMcaType split MCA_IPID: HWID is bits 43:32, McaType
// bits 63:48.
func IPIDHWID(ipid uint64) uint16    { return uint16((ipid >> 32) & 0xfff) }
func IPIDMcaType(ipid uint64) uint16 { return uint16(ipid >> 48) }

// lookupSMCABank names the block behind an SMCA bank from its IPID.
func lookupSMCABank(ipid uint64) (smcaBank, bool) {
	hwid, t := IPIDHWID(ipid), IPIDMcaType(ipid)
	for _, b := range smcaBanks {
		if b.hwid == hwid && b.mcaType == t {
			return b, true
		}
	}
	return smcaBank{hwid: hwid, mcaType: t, name: "unknown", kind: BankUnknown}, false
}
