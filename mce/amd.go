package mce

import (
	"fmt"
	"strconv"

	"github.com/selfprotect/selfprotect/fault"
)

// Legacy (pre-Zen) AMD bank numbers. Bank 3 (LS) is unused on some
// families; it is still core-private where it exists.
var legacyAMDBanks = [5]string{"data-cache", "instruction-cache", "bus-unit", "load-store", "northbridge"}

const (
	legacyNBBank   = 4
	legacyXECMask  = 0x1f // status bits 20:16
	legacyXECDRAM  = 8    // northbridge extended error code: DRAM ECC
	smcaXECMask    = 0x3f // status bits 21:16
	smcaXECDRAMECC = 0    // UMC extended error code: DRAM ECC
)

// decodeLegacyAMD handles families before 0x17 (QEMU's qemu64 is family 15
// model 107). It reports whether the bank is core-private.
func decodeLegacyAMD(d *Decoded, r Record, ec *errorCode) bool {
	core := false
	switch {
	case r.Bank < legacyNBBank:
		d.BankKind, d.BankName = BankCore, legacyAMDBanks[r.Bank]
		core = true
	case r.Bank == legacyNBBank:
		d.BankKind, d.BankName = BankNorthbridge, legacyAMDBanks[r.Bank]
	default:
		// Banks 5 and up are family-specific (FR on 10h, EX/FP on 15h).
		d.BankKind = BankUnknown
	}
	dram := r.Bank == legacyNBBank && amdXEC(r.Status, legacyXECMask) == legacyXECDRAM
	if dram {
		// The northbridge reports DRAM ECC with a cache-looking MCACOD
		// (0x011b); the extended error code is what says "memory".
		setMemory(d, ec, "DRAM ECC")
	}
	if !d.AddrValid {
		return core
	}
	// MISC here is a threshold-counter register, not a granularity: the
	// address is taken as exact. The kernel's amd_mce_usable_address
	// trusts a northbridge DRAM ECC address, and otherwise only a
	// poisoned one (bit 43, which bank 4 does not define).
	d.PhysAddr = r.Addr
	d.AddrUsable = dram || (r.Bank != legacyNBBank && r.Status&StatusPoison != 0)
	return core
}

// decodeSMCA handles Zen and later: the bank's type comes from MCA_IPID.
func decodeSMCA(d *Decoded, r Record, ec *errorCode) bool {
	b, known := lookupSMCABank(r.IPID)
	d.BankKind = b.kind
	if known {
		d.BankName = b.name
	} else {
		d.BankName = fmt.Sprintf("hwid %#x mcatype %#x", b.hwid, b.mcaType)
	}
	switch {
	case b.kind == BankUMC && amdXEC(r.Status, smcaXECMask) == smcaXECDRAMECC:
		setMemory(d, ec, "DRAM ECC")
		d.Channel = int((r.IPID >> 20) & 0xfff)
		if r.Status&StatusSyndV != 0 {
			d.ChipSelect = int(r.Synd & 0x7)
		}
		ec.what += " on UMC " + strconv.Itoa(d.Channel)
		if d.ChipSelect != fault.Unknown {
			ec.what += " chip select " + strconv.Itoa(d.ChipSelect)
		}
	case b.name == "pcie":
		d.Class = fault.ClassPCIe
		ec.what = "PCIe unit error"
	}
	if !d.AddrValid {
		return b.kind == BankCore
	}
	// On SMCA, ADDR[61:56] holds the lowest valid address bit; the kernel
	// strips it (smca_extract_err_addr) before logging, so in records it
	// read from the bank the field is zero and the address already masked.
	lsb := uint8((r.Addr >> 56) & 0x3f)
	d.AddrLSB = lsb
	if lsb <= 55 {
		d.PhysAddr = r.Addr & (uint64(1)<<56 - 1) &^ (uint64(1)<<lsb - 1)
	}
	// The kernel trusts an SMCA address only when it comes with poison:
	// a UMC reports a normalized DRAM address, not a system physical one,
	// which only the EDAC driver (ras:mc_event) can translate.
	d.AddrUsable = r.Status&StatusPoison != 0 && lsb <= 12
	return b.kind == BankCore
}

// setMemory reclassifies an error as a DRAM error whatever its MCACOD said.
func setMemory(d *Decoded, ec *errorCode, what string) {
	d.Class = fault.ClassMemory
	d.CacheLevel = fault.Unknown
	d.CacheType = ""
	d.TransactionType = "dram-ecc"
	ec.class, ec.level, ec.cacheType, ec.transactionType = fault.ClassMemory, fault.Unknown, "", "dram-ecc"
	ec.what = what
}

// amdSeverity follows the kernel's AMD rules: PCC is fatal, any other
// uncorrected error is recoverable by killing the consumer (TCC says the
// task, not the machine, is lost), and an error the hardware could not
// correct but has not been consumed yet is deferred.
func amdSeverity(r Record) fault.Severity {
	s := r.Status
	switch {
	case s&StatusUC == 0 && s&StatusDeferred != 0:
		return fault.SeverityDeferred
	case s&StatusUC == 0:
		return fault.SeverityCorrected
	case s&StatusPCC != 0:
		return fault.SeverityFatal
	}
	return fault.SeverityUncorrectedRecoverable
}

// architecturalSeverity uses only the bits both vendors define, for a
// record whose vendor we do not know.
func architecturalSeverity(r Record) fault.Severity {
	switch {
	case r.Status&StatusUC == 0:
		return fault.SeverityCorrected
	case r.Status&StatusPCC != 0:
		return fault.SeverityFatal
	}
	return fault.SeverityUncorrectedRecoverable
}
