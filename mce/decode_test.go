package mce

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

// CPUID leaf 1 EAX of the captured guests and of two Zen parts.
const (
	cpuidIntelSKX = 0x50654    // family 6 model 0x55 (QEMU Intel model)
	cpuidQEMU64   = 0x60fb1    // AMD family 0xf model 0x6b (QEMU qemu64)
	cpuidMilan    = 0x00a00f11 // AMD family 0x19 model 0x01
	cpuidHygon    = 0x00900f01 // Hygon family 0x18 model 0x00
)

// IPIDs: McaType in bits 63:48, HWID in bits 43:32, instance in the low word.
const (
	ipidUMC     = 0x0000009600350f00
	ipidLS      = 0x000000b000000000
	ipidL2      = 0x000200b000000000
	ipidL3      = 0x000700b000020700
	ipidPCIe    = 0x0000004600000000
	ipidBadL3   = 0x0000000700000000 // HWID 7, McaType 0: not a kernel bank type
	ipidUnknown = 0x0009012300000000
)

func intelRec(bank uint8, status, addr, misc uint64) Record {
	return Record{CPU: 1, CPUID: cpuidIntelSKX, CPUVendor: linuxVendorIntel, Bank: bank, Status: status, Addr: addr, Misc: misc}
}

func amdRec(bank uint8, status, addr, misc uint64) Record {
	return Record{CPU: 1, CPUID: cpuidQEMU64, CPUVendor: linuxVendorAMD, Bank: bank, Status: status, Addr: addr, Misc: misc}
}

func zenRec(bank uint8, status, addr, ipid uint64) Record {
	return Record{CPU: 3, CPUID: cpuidMilan, CPUVendor: linuxVendorAMD, Bank: bank, Status: status, Addr: addr, IPID: ipid}
}

func with(r Record, f func(*Record)) Record { f(&r); return r }

type wantDecode struct {
	vendor     fault.Vendor
	smca       bool
	severity   fault.Severity
	class      fault.Class
	level      int
	coreBank   bool
	bankKind   string
	usable     bool
	physAddr   uint64
	lsb        uint8
	mcacod     uint16
	cacheType  string
	transType  string
	overflow   bool
	summaryHas string
}

func TestDecode(t *testing.T) {
	const U = fault.Unknown
	var (
		CE  = fault.SeverityCorrected
		DE  = fault.SeverityDeferred
		UR  = fault.SeverityUncorrectedRecoverable
		FAT = fault.SeverityFatal
	)
	intel, amd := fault.VendorIntel, fault.VendorAMD
	tests := []struct {
		name string
		rec  Record
		want wantDecode
	}{
		// The real injections (kernel-lab.md, kernel-data/*/injections.md).
		{"real AMD legacy DRAM ECC bank 4", amdRec(4, 0x9c0000000008011b, 0x2ba2040, 0x8c),
			wantDecode{vendor: amd, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankNorthbridge,
				usable: true, physAddr: 0x2ba2040, lsb: 0, mcacod: 0x011b, transType: "dram-ecc", summaryHas: "DRAM ECC"}},
		{"real Intel memory controller bank 7", intelRec(7, 0x9c00000000000090, 0x2a21040, 0x8c),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x2a21000, lsb: 12, mcacod: 0x0090, transType: "read", summaryHas: "channel 0"}},
		// 0x134 = 0000 0001 0011 0100: cache hierarchy, RRRR 0011 data
		// read, TT 01 data, LL 00 level 0.
		{"real Intel cache 0x134 bank 1", intelRec(1, 0x9000000000000134, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: 0, coreBank: true, bankKind: BankCore,
				mcacod: 0x0134, cacheType: "data", transType: "data-read", summaryHas: "L0 cache data data-read"}},
		{"real AMD cache 0x134 bank 1", amdRec(1, 0x9000000000000134, 0, 0),
			wantDecode{vendor: amd, severity: CE, class: fault.ClassCache, level: 0, coreBank: true, bankKind: BankCore,
				mcacod: 0x0134, cacheType: "data", transType: "data-read", summaryHas: "instruction-cache"}},

		// Uncorrected and fatal variants of the injections.
		{"Intel UC memory (UCNA)", intelRec(7, 0xbc00000000000090, 0x2a21040, 0x8c),
			wantDecode{vendor: intel, severity: UR, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x2a21000, lsb: 12, mcacod: 0x90, transType: "read"}},
		{"AMD UC DRAM ECC", amdRec(4, 0xbc0000000008011b, 0x2ba2040, 0x8c),
			wantDecode{vendor: amd, severity: UR, class: fault.ClassMemory, level: U, bankKind: BankNorthbridge,
				usable: true, physAddr: 0x2ba2040, mcacod: 0x011b, transType: "dram-ecc"}},
		{"Intel PCC fatal", intelRec(7, 0xbe00000000000090, 0x2a21040, 0x8c),
			wantDecode{vendor: intel, severity: FAT, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x2a21000, lsb: 12, mcacod: 0x90, transType: "read", summaryHas: "processor context corrupt"}},
		{"AMD PCC fatal", amdRec(4, 0xbe0000000008011b, 0x2ba2040, 0),
			wantDecode{vendor: amd, severity: FAT, class: fault.ClassMemory, level: U, bankKind: BankNorthbridge,
				usable: true, physAddr: 0x2ba2040, mcacod: 0x011b, transType: "dram-ecc"}},

		// Intel severity refinements with S and AR (bits 56, 55).
		{"Intel SRAR data load", intelRec(1, 0xbd80000000000134, 0x1234567, 0x8c),
			wantDecode{vendor: intel, severity: UR, class: fault.ClassCache, level: 0, coreBank: true, bankKind: BankCore,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0x134, cacheType: "data", transType: "data-read"}},
		{"Intel SRAR with lost events", intelRec(1, 0xfd80000000000134, 0x1234567, 0x8c),
			wantDecode{vendor: intel, severity: FAT, class: fault.ClassCache, level: 0, coreBank: true, bankKind: BankCore,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0x134, cacheType: "data", transType: "data-read", overflow: true}},
		{"Intel SRAR unknown MCACOD", intelRec(7, 0xbd80000000000090, 0x1234567, 0x8c),
			wantDecode{vendor: intel, severity: FAT, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0x90, transType: "read"}},
		{"Intel SRAO scrub", intelRec(7, 0xbd000000000000c0, 0x1234567, 0x8c),
			wantDecode{vendor: intel, severity: UR, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0xc0, transType: "scrub"}},
		{"Intel UC with AR but not S is illegal", intelRec(7, 0xbc80000000000090, 0x1234567, 0x8c),
			wantDecode{vendor: intel, severity: FAT, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0x90, transType: "read"}},
		{"Intel without SER_P: UC overflow is fatal, address unused",
			with(intelRec(7, 0xfc00000000000090, 0x1234567, 0x8c), func(r *Record) { r.MCGCap = 0xc09 }),
			wantDecode{vendor: intel, severity: FAT, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				physAddr: 0x1234567, mcacod: 0x90, transType: "read", overflow: true}},
		{"Intel with SER_P in mcgcap: address used",
			with(intelRec(7, 0x9c00000000000090, 0x1234567, 0x8c), func(r *Record) { r.MCGCap = 0x1000c14 }),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x1234000, lsb: 12, mcacod: 0x90, transType: "read"}},

		// Intel cache levels and banks.
		{"Intel generic-level cache on core bank", intelRec(1, 0x9000000000000117, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: U, bankKind: BankCore,
				mcacod: 0x117, cacheType: "data", transType: "read", summaryHas: "generic-level"}},
		{"Intel L2 on MLC bank 3", intelRec(3, 0x9000000000000136, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: 2, coreBank: true, bankKind: BankCore,
				mcacod: 0x136, cacheType: "data", transType: "data-read"}},
		{"Intel cache on an uncore bank is not a core bank", intelRec(9, 0x9000000000000136, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: 2, bankKind: BankUncore,
				mcacod: 0x136, cacheType: "data", transType: "data-read"}},
		{"filter bit 12 ignored", intelRec(1, 0x9000000000001134, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: 0, coreBank: true, bankKind: BankCore,
				mcacod: 0x134, cacheType: "data", transType: "data-read"}},
		{"generic cache hierarchy 000F 0000 0000 11LL", intelRec(0, 0x900000000000000d, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				mcacod: 0x0d, cacheType: "generic", transType: "generic"}},
		// 0x14 = 0000 0000 0001 0100: TLB, TT 01 data, LL 00.
		{"TLB on DTLB bank", intelRec(2, 0x9000000000000014, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassTLB, level: 0, coreBank: true, bankKind: BankCore,
				mcacod: 0x14, cacheType: "data", summaryHas: "L0 TLB data"}},
		// 0xe0b = 0000 1110 0000 1011: bus, PP 11 generic, T 0, RRRR 0000, II 10 io, LL 11.
		{"bus/interconnect", intelRec(5, 0x9000000000000e0b, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassBus, level: U, bankKind: BankUncore,
				mcacod: 0xe0b, transType: "generic", summaryHas: "bus/interconnect generic generic io"}},
		{"bus timeout", intelRec(4, 0x9000000000000d11, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassBus, level: U, bankKind: BankUncore,
				mcacod: 0xd11, transType: "read", summaryHas: "timeout"}},
		{"overflow", intelRec(7, 0xdc00000000000090, 0x2a21040, 0x8c),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x2a21000, lsb: 12, mcacod: 0x90, transType: "read", overflow: true, summaryHas: "overflow"}},

		// Intel address usability.
		{"MISC mode not physical", intelRec(7, 0x9c00000000000090, 0x2a21040, 0x4c),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				physAddr: 0x2a21000, lsb: 12, mcacod: 0x90, transType: "read", summaryHas: "not a usable physical address"}},
		{"LSB 21 coarser than a page", intelRec(7, 0x9c00000000000090, 0x2a21040, 0x95),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				physAddr: 0x2a00000, lsb: 21, mcacod: 0x90, transType: "read"}},
		{"no MISCV", intelRec(7, 0x9400000000000090, 0x2a21040, 0x8c),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				physAddr: 0x2a21040, mcacod: 0x90, transType: "read"}},

		// Legacy AMD details.
		{"legacy AMD cache with address but no poison", amdRec(0, 0x9400000000000135, 0x1234567, 0),
			wantDecode{vendor: amd, severity: CE, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				physAddr: 0x1234567, mcacod: 0x135, cacheType: "data", transType: "data-read"}},
		{"legacy AMD poison on data cache", amdRec(0, 0xb400080000000135, 0x1234567, 0),
			wantDecode{vendor: amd, severity: UR, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				usable: true, physAddr: 0x1234567, mcacod: 0x135, cacheType: "data", transType: "data-read"}},
		{"legacy AMD northbridge non-DRAM", amdRec(4, 0x9c00000000060e0f, 0x1234567, 0),
			wantDecode{vendor: amd, severity: CE, class: fault.ClassBus, level: U, bankKind: BankNorthbridge,
				physAddr: 0x1234567, mcacod: 0xe0f, transType: "generic"}},
		{"legacy AMD bank 5 is family-specific", amdRec(5, 0x9000000000000135, 0, 0),
			wantDecode{vendor: amd, severity: CE, class: fault.ClassCache, level: 1, bankKind: BankUnknown,
				mcacod: 0x135, cacheType: "data", transType: "data-read"}},

		// SMCA.
		{"SMCA UMC DRAM ECC: normalized address not used", zenRec(15, 0x9c2040000000011b, 0xdeadb040, ipidUMC),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankUMC,
				physAddr: 0xdeadb040, mcacod: 0x11b, transType: "dram-ecc", summaryHas: "(umc)"}},
		{"SMCA UMC deferred", zenRec(15, 0x940010000000011b, 0xdeadb040, ipidUMC),
			wantDecode{vendor: amd, smca: true, severity: DE, class: fault.ClassMemory, level: U, bankKind: BankUMC,
				physAddr: 0xdeadb040, mcacod: 0x11b, transType: "dram-ecc"}},
		{"SMCA UMC other XEC is not DRAM ECC", zenRec(15, 0x9c2040000005011b, 0, ipidUMC),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassCache, level: U, bankKind: BankUMC,
				mcacod: 0x11b, cacheType: "generic", transType: "read"}},
		{"SMCA LS poison, LSB from ADDR[61:56]", zenRec(0, 0xb400080000000135, 0x0c00000123456789, ipidLS),
			wantDecode{vendor: amd, smca: true, severity: UR, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				usable: true, physAddr: 0x123456000, lsb: 12, mcacod: 0x135, cacheType: "data", transType: "data-read", summaryHas: "load-store"}},
		{"SMCA poison coarser than a page", zenRec(0, 0xb400080000000135, 0x1500000123456789, ipidLS),
			wantDecode{vendor: amd, smca: true, severity: UR, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				physAddr: 0x123400000, lsb: 21, mcacod: 0x135, cacheType: "data", transType: "data-read"}},
		{"SMCA L2 bank L2 code", zenRec(2, 0x900000000000010a, 0, ipidL2),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassCache, level: 2, coreBank: true, bankKind: BankCore,
				mcacod: 0x10a, cacheType: "generic", transType: "generic", summaryHas: "l2-cache"}},
		{"SMCA L3 is shared", zenRec(7, 0x900000000000010a, 0, ipidL3),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassCache, level: 2, bankKind: BankL3,
				mcacod: 0x10a, cacheType: "generic", transType: "generic", summaryHas: "l3-cache"}},
		{"SMCA HWID 7 is no kernel bank type", zenRec(7, 0x900000000000010a, 0, ipidBadL3),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassCache, level: 2, bankKind: BankUnknown,
				mcacod: 0x10a, cacheType: "generic", transType: "generic", summaryHas: "hwid 0x7 mcatype 0x0"}},
		{"SMCA unknown IPID", zenRec(20, 0x9000000000000135, 0, ipidUnknown),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassCache, level: 1, bankKind: BankUnknown,
				mcacod: 0x135, cacheType: "data", transType: "data-read", summaryHas: "hwid 0x123 mcatype 0x9"}},
		{"SMCA PCIe unit", zenRec(25, 0x9000000000000e0b, 0, ipidPCIe),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassPCIe, level: U, bankKind: BankUncore,
				mcacod: 0xe0b, transType: "generic", summaryHas: "PCIe"}},
		{"SMCA UC with PCC is fatal", zenRec(0, 0xbe00000000000135, 0, ipidLS),
			wantDecode{vendor: amd, smca: true, severity: FAT, class: fault.ClassCache, level: 1, coreBank: true, bankKind: BankCore,
				mcacod: 0x135, cacheType: "data", transType: "data-read"}},
		{"Hygon is AMD SMCA", with(zenRec(15, 0x9c2040000000011b, 0, ipidUMC), func(r *Record) { r.CPUVendor, r.CPUID = linuxVendorHygon, cpuidHygon }),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankUMC,
				mcacod: 0x11b, transType: "dram-ecc"}},
		{"AMD without CPUID but with IPID is SMCA", with(zenRec(15, 0x9c2040000000011b, 0, ipidUMC), func(r *Record) { r.CPUID = 0 }),
			wantDecode{vendor: amd, smca: true, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankUMC,
				mcacod: 0x11b, transType: "dram-ecc"}},

		// Other vendors and empty records.
		{"Zhaoxin is Intel", with(intelRec(7, 0x9c00000000000090, 0x2a21040, 0x8c), func(r *Record) { r.CPUVendor = linuxVendorZhaoxin }),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassMemory, level: U, bankKind: BankMemoryController,
				usable: true, physAddr: 0x2a21000, lsb: 12, mcacod: 0x90, transType: "read"}},
		{"unknown vendor never uses the address", with(intelRec(1, 0xbc00000000000134, 0x2a21040, 0x8c), func(r *Record) { r.CPUVendor = 5 }),
			wantDecode{vendor: fault.VendorUnknown, severity: UR, class: fault.ClassCache, level: 0, bankKind: BankUnknown,
				physAddr: 0x2a21040, mcacod: 0x134, cacheType: "data", transType: "data-read"}},
		{"empty status", intelRec(0, 0, 0, 0),
			wantDecode{vendor: intel, severity: CE, class: fault.ClassOther, level: U, bankKind: BankCore, summaryHas: "status not valid"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decode(tc.rec)
			w := tc.want
			require.Equal(t, w.vendor, d.Vendor, "vendor")
			require.Equal(t, w.smca, d.SMCA, "smca")
			require.Equal(t, w.severity, d.Severity, "severity")
			require.Equal(t, w.class, d.Class, "class")
			require.Equal(t, w.level, d.CacheLevel, "cache level")
			require.Equal(t, w.coreBank, d.CoreBank, "core bank")
			require.Equal(t, w.bankKind, d.BankKind, "bank kind")
			require.Equal(t, w.usable, d.AddrUsable, "address usable")
			require.Equal(t, w.physAddr, d.PhysAddr, "physical address %#x", d.PhysAddr)
			require.Equal(t, w.lsb, d.AddrLSB, "address lsb")
			require.Equal(t, w.mcacod, d.MCACOD, "mcacod")
			require.Equal(t, w.cacheType, d.CacheType, "cache type")
			require.Equal(t, w.transType, d.TransactionType, "transaction type")
			require.Equal(t, w.overflow, d.Overflow, "overflow")
			require.Equal(t, tc.rec.Status&StatusVAL != 0, d.Valid, "valid")
			require.Equal(t, tc.rec.Status&StatusUC != 0, d.Uncorrected, "uncorrected")
			require.Equal(t, tc.rec.Status&StatusADDRV != 0, d.AddrValid, "addrv")
			require.Contains(t, d.Summary, w.summaryHas)
		})
	}
}

func TestFamilyModel(t *testing.T) {
	tests := []struct {
		eax           uint32
		family, model uint32
	}{
		{cpuidQEMU64, 0xf, 0x6b},
		{cpuidIntelSKX, 6, 0x55},
		{cpuidMilan, 0x19, 0x01},
		{cpuidHygon, 0x18, 0x00},
		{0x00830f10, 0x17, 0x31}, // Rome
		{0x00000f41, 0xf, 0x4},   // Pentium 4: base family 0xf, no ext model
		{0x00000543, 5, 4},       // family 5: extended model not added
	}
	for _, tc := range tests {
		f, m := familyModel(tc.eax)
		require.Equal(t, tc.family, f, "family of %#x", tc.eax)
		require.Equal(t, tc.model, m, "model of %#x", tc.eax)
	}
}

func TestDecodeRealCaptures(t *testing.T) {
	for _, cell := range cells {
		t.Run(cell, func(t *testing.T) {
			for i, rec := range realRecords(t, cell) {
				r, err := FromTrace(rec)
				require.NoError(t, err)
				d := Decode(r)
				require.False(t, d.SMCA)
				require.Equal(t, fault.SeverityCorrected, d.Severity)
				if i < 3 {
					require.Equal(t, fault.ClassMemory, d.Class, "record %d", i)
					require.True(t, d.AddrUsable)
					require.Equal(t, r.Addr>>12, d.PhysAddr>>12)
					require.False(t, d.CoreBank)
				} else {
					require.Equal(t, fault.ClassCache, d.Class, "record %d", i)
					require.Equal(t, 0, d.CacheLevel)
					require.True(t, d.CoreBank)
					require.False(t, d.AddrValid)
				}
			}
		})
	}
}

func TestDecodeMCACODNames(t *testing.T) {
	tests := []struct {
		code  uint16
		class fault.Class
		what  string
	}{
		{0x0000, fault.ClassOther, "no error"},
		{0x0001, fault.ClassOther, "unclassified"},
		{0x0002, fault.ClassOther, "microcode ROM parity"},
		{0x0005, fault.ClassOther, "internal parity"},
		{0x0400, fault.ClassOther, "internal timer"},
		{0x0405, fault.ClassOther, "internal unclassified"},
		{0x0007, fault.ClassOther, "error code 0x7"},
		{0x009f, fault.ClassMemory, "memory controller read, channel unknown"},
		{0x00f3, fault.ClassMemory, "memory controller reserved, channel 3"},
		{0x01f0, fault.ClassCache, "L0 cache instruction reserved"},
		{0x1010, fault.ClassTLB, "L0 TLB instruction"},
	}
	for _, tc := range tests {
		ec := decodeMCACOD(tc.code)
		require.Equal(t, tc.class, ec.class, "%#x", tc.code)
		require.Equal(t, tc.what, ec.what, "%#x", tc.code)
	}
	// Unknown vendor with a PCC error: only the architectural bits count.
	d := Decode(Record{CPUVendor: 99, Status: StatusVAL | StatusUC | StatusPCC})
	require.Equal(t, fault.SeverityFatal, d.Severity)
	d = Decode(Record{CPUVendor: 99, Status: StatusVAL | StatusDeferred})
	require.Equal(t, fault.SeverityCorrected, d.Severity, "the deferred bit is AMD's")
}

// TestMemoryChannel: the location a memory record gives by itself, for the
// DIMM rule when no mc_event names the DIMM.
func TestMemoryChannel(t *testing.T) {
	const zen = 0x00a10f11 // family 0x19
	tests := []struct {
		name     string
		r        Record
		channel  int
		cs       int
		summary  string
		memClass bool
	}{
		{"intel memory controller channel 3", Record{CPUVendor: linuxVendorIntel, Bank: 13, Status: 0x9c00000000000093}, 3, fault.Unknown, "channel 3", true},
		{"intel channel unspecified", Record{CPUVendor: linuxVendorIntel, Bank: 7, Status: 0x9c0000000000009f}, fault.Unknown, fault.Unknown, "channel unknown", true},
		{"intel cache error has no channel", Record{CPUVendor: linuxVendorIntel, Bank: 1, Status: 0x9000000000000134}, fault.Unknown, fault.Unknown, "", false},
		{"smca UMC 1 with chip select", Record{CPUVendor: linuxVendorAMD, CPUID: zen, Bank: 16, IPID: 0x0000009600150f00,
			Status: 0x9c00000000000000 | StatusSyndV, Synd: 0x5}, 1, 5, "UMC 1 chip select 5", true},
		{"smca UMC 0 without syndrome", Record{CPUVendor: linuxVendorAMD, CPUID: zen, Bank: 15, IPID: 0x0000009600050f00,
			Status: 0x9c00000000000000}, 0, fault.Unknown, "UMC 0", true},
		{"legacy AMD northbridge names no channel", Record{CPUVendor: linuxVendorAMD, CPUID: 0x60fb1, Bank: 4, Status: 0x9c0000000008011b, Addr: 0x2d94040},
			fault.Unknown, fault.Unknown, "DRAM ECC", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decode(tc.r)
			require.Equal(t, tc.channel, d.Channel)
			require.Equal(t, tc.cs, d.ChipSelect)
			require.Equal(t, tc.memClass, d.Class == fault.ClassMemory)
			require.Contains(t, d.Summary, tc.summary)
			ev := ToEvent(tc.r, d, time.Unix(0, 0), fault.SourceTraceMCE)
			require.Equal(t, tc.channel, ev.Channel)
		})
	}
}
