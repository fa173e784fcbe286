package mce

import "github.com/selfprotect/selfprotect/fault"

// intelCoreBanks names banks 0–3, private to a core on every Intel server
// part since Nehalem. Higher banks (PCU, QPI/UPI, CHA/LLC, IMC) vary by
// model, so they are told apart by the error code instead of the number.
var intelCoreBanks = [4]string{"ifu", "dcu", "dtlb", "mlc"}

// Architectural MCACODs the kernel's severity table recovers from when AR
// is set: a data load and an instruction fetch that consumed poison.
const (
	mcacodDataLoad   = 0x0134
	mcacodInstrFetch = 0x0150
)

// serEnabled says whether S, AR and MISC's address fields carry meaning.
// MCG_CAP.SER_P should decide it, but mce-inject (and QEMU's monitor)
// produce records with mcgcap 0: the field is then simply not filled in,
// so only an explicit mcgcap without SER_P turns recovery semantics off.
func serEnabled(mcgcap uint64) bool {
	return mcgcap == 0 || mcgcap&MCGCapSERP != 0
}

// decodeIntel fills bank and address facts and reports whether the bank is
// core-private.
func decodeIntel(d *Decoded, r Record) bool {
	core := false
	switch {
	case r.Bank < uint8(len(intelCoreBanks)):
		d.BankKind, d.BankName = BankCore, intelCoreBanks[r.Bank]
		core = true
	case d.Class == fault.ClassMemory:
		d.BankKind = BankMemoryController
		if ch := d.MCACOD & 0xf; d.MCACOD&0xff80 == 0x0080 && ch != 0xf {
			d.Channel = int(ch)
		}
	default:
		d.BankKind = BankUncore
	}
	if !d.AddrValid {
		return core
	}
	d.PhysAddr = r.Addr
	if !d.MiscValid || !serEnabled(r.MCGCap) {
		return core
	}
	lsb := miscAddrLSB(r.Misc)
	d.AddrLSB = lsb
	// Bits below the LSB are not part of the address; the kernel clears
	// them when it reads the bank itself, but injected records keep them.
	d.PhysAddr = r.Addr &^ (uint64(1)<<lsb - 1)
	// The kernel's own test (mce_usable_address): physical mode and at
	// least page precision.
	d.AddrUsable = miscAddrMode(r.Misc) == miscAddrModePhysical && lsb <= 12
	return core
}

// intelSeverity follows the order of the kernel's Intel severity table
// (arch/x86/kernel/cpu/mce/severity.c) for what a logged record can show;
// the execution context (user or kernel) is not in the record, so an
// action-required error on a known code is taken as recoverable.
func intelSeverity(r Record) fault.Severity {
	s := r.Status
	switch {
	case s&StatusUC == 0:
		return fault.SeverityCorrected
	case s&StatusPCC != 0:
		return fault.SeverityFatal
	case !serEnabled(r.MCGCap):
		if s&StatusOVER != 0 {
			return fault.SeverityFatal
		}
		return fault.SeverityUncorrectedRecoverable
	}
	signalled, actionRequired := s&StatusS != 0, s&StatusAR != 0
	over := s&StatusOVER != 0
	switch {
	case !signalled && !actionRequired:
		// UCNA: uncorrected, no action required (patrol scrub, a
		// poisoned line written back); OVER does not change it.
		return fault.SeverityUncorrectedRecoverable
	case !signalled:
		if !over {
			return fault.SeverityFatal // the table's illegal UCNA-with-AR combination
		}
		return fault.SeverityUncorrectedRecoverable
	case actionRequired && over:
		return fault.SeverityFatal // action required with lost events
	case actionRequired:
		code := MCACOD(s) & mcacodMask
		addrMisc := s&(StatusADDRV|StatusMISCV) == StatusADDRV|StatusMISCV
		if addrMisc && (code == mcacodDataLoad || code == mcacodInstrFetch) {
			return fault.SeverityUncorrectedRecoverable
		}
		return fault.SeverityFatal // action required, unknown MCACOD
	}
	return fault.SeverityUncorrectedRecoverable // action optional, with or without lost events
}
