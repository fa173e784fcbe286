package mce

import (
	"strconv"

	"github.com/selfprotect/selfprotect/fault"
)

// Decoded is what one MCA record means: who reported it, how bad it is,
// which part of the machine, and whether its address names a physical page.
type Decoded struct {
	Vendor        fault.Vendor
	Family, Model uint32
	// SMCA is true on AMD Scalable MCA (family 0x17 and later, Hygon): the
	// bank's type comes from MCA_IPID, not from its number.
	SMCA bool

	Valid, Overflow, Uncorrected, Enabled, MiscValid, AddrValid, PCC bool

	Severity fault.Severity
	Class    fault.Class
	// MCACOD is the architectural error code with the filtering bit (12)
	// cleared.
	MCACOD uint16
	// CacheLevel is MCACOD's LL (0, 1, 2) for cache and TLB errors,
	// fault.Unknown for the generic level and every other class.
	CacheLevel      int
	CacheType       string // "instruction", "data", "generic" (cache and TLB codes)
	TransactionType string // "data-read", "eviction", ... for cache and bus; "read", "scrub", ... for memory
	// CoreBank is true only when the bank is private to one core and the
	// cache level is L0, L1 or L2: then, and only then, offlining that CPU
	// can take the failing cache out of service.
	CoreBank bool
	BankKind string // one of the Bank* constants
	BankName string // "load-store", "northbridge", "umc", ... when known
	// Channel is the memory channel the record names by itself: Intel's
	// memory-controller MCACOD bits 3:0 (0xf means unspecified), the SMCA
	// UMC instance (MCA_IPID bits 31:20, which the kernel's AMD address
	// translation also reads as the channel). fault.Unknown otherwise.
	Channel int
	// ChipSelect is the SMCA UMC chip select from MCA_SYND bits 2:0 when
	// SyndV is set, fault.Unknown otherwise.
	ChipSelect int

	// PhysAddr is the reported address with its invalid low bits cleared.
	// AddrUsable says it is a system physical address precise enough to
	// name a page (AddrLSB <= 12) by the vendor's rules.
	PhysAddr   uint64
	AddrUsable bool
	AddrLSB    uint8

	Summary string
}

// Linux's X86_VENDOR_* numbers, as logged in mce_record's cpuvendor.
const (
	linuxVendorIntel   = 0
	linuxVendorAMD     = 2
	linuxVendorHygon   = 9
	linuxVendorZhaoxin = 10
)

// vendorOf maps the kernel's vendor number. Hygon's Dhyana is a Zen core
// and follows AMD's MCA; Zhaoxin follows Intel's (the kernel's
// mce_usable_address treats both so).
func vendorOf(v uint8) fault.Vendor {
	switch v {
	case linuxVendorIntel, linuxVendorZhaoxin:
		return fault.VendorIntel
	case linuxVendorAMD, linuxVendorHygon:
		return fault.VendorAMD
	}
	return fault.VendorUnknown
}

// familyModel decodes CPUID leaf 1 EAX the way the kernel's x86_family and
// x86_model do: the extended family is added only when the base family is
// 0xf, the extended model only from family 6 on.
func familyModel(eax uint32) (family, model uint32) {
	family = (eax >> 8) & 0xf
	if family == 0xf {
		family += (eax >> 20) & 0xff
	}
	model = (eax >> 4) & 0xf
	if family >= 0x6 {
		model += ((eax >> 16) & 0xf) << 4
	}
	return family, model
}

// Decode interprets a record. It never fails: whatever it cannot tell stays
// at its "unknown" value (ClassOther, CacheLevel fault.Unknown, BankKind
// "unknown", AddrUsable false).
func Decode(r Record) Decoded {
	s := r.Status
	d := Decoded{
		Vendor:      vendorOf(r.CPUVendor),
		Valid:       s&StatusVAL != 0,
		Overflow:    s&StatusOVER != 0,
		Uncorrected: s&StatusUC != 0,
		Enabled:     s&StatusEN != 0,
		MiscValid:   s&StatusMISCV != 0,
		AddrValid:   s&StatusADDRV != 0,
		PCC:         s&StatusPCC != 0,
		MCACOD:      MCACOD(s) & mcacodMask,
		BankKind:    BankUnknown,
		Channel:     fault.Unknown,
		ChipSelect:  fault.Unknown,
	}
	d.Family, d.Model = familyModel(r.CPUID)

	ec := decodeMCACOD(d.MCACOD)
	d.Class = ec.class
	d.CacheLevel = ec.level
	d.CacheType = ec.cacheType
	d.TransactionType = ec.transactionType

	core := false
	switch d.Vendor {
	case fault.VendorIntel:
		core = decodeIntel(&d, r)
		d.Severity = intelSeverity(r)
	case fault.VendorAMD:
		// A record with no CPUID but an IPID can only come from SMCA:
		// legacy banks have no IPID register.
		d.SMCA = d.Family >= 0x17 || (r.CPUID == 0 && r.IPID != 0)
		if d.SMCA {
			core = decodeSMCA(&d, r, &ec)
		} else {
			core = decodeLegacyAMD(&d, r, &ec)
		}
		d.Severity = amdSeverity(r)
	default:
		// Unknown vendor: no rule says the address is physical or how
		// precise it is, so it is reported but never used.
		if d.AddrValid {
			d.PhysAddr = r.Addr
		}
		d.Severity = architecturalSeverity(r)
	}
	d.CoreBank = core && d.CacheLevel >= 0 && d.CacheLevel <= 2
	d.Summary = summary(&d, r, &ec)
	return d
}

// summary is one line for humans: vendor, bank, severity, class and the
// code's meaning, then the address. It is built by appending rather than
// with fmt because every record pays for it.
func summary(d *Decoded, r Record, ec *errorCode) string {
	b := make([]byte, 0, 192)
	b = append(b, d.Vendor.String()...)
	b = append(b, " cpu "...)
	b = strconv.AppendUint(b, uint64(r.CPU), 10)
	b = append(b, " bank "...)
	b = strconv.AppendUint(b, uint64(r.Bank), 10)
	switch {
	case d.BankName != "":
		b = append(b, " ("...)
		b = append(b, d.BankName...)
		b = append(b, ')')
	case d.BankKind != BankUnknown:
		b = append(b, " ("...)
		b = append(b, d.BankKind...)
		b = append(b, ')')
	}
	b = append(b, ": "...)
	b = append(b, d.Severity.String()...)
	b = append(b, ' ')
	b = append(b, d.Class.String()...)
	b = append(b, " error, "...)
	b = append(b, ec.what...)
	if !d.Valid {
		b = append(b, ", status not valid"...)
	}
	if d.Overflow {
		b = append(b, ", overflow"...)
	}
	if d.PCC {
		b = append(b, ", processor context corrupt"...)
	}
	if d.AddrValid {
		b = append(b, ", addr "...)
		b = appendHex(b, d.PhysAddr)
		if d.AddrUsable {
			b = append(b, " (lsb "...)
			b = strconv.AppendUint(b, uint64(d.AddrLSB), 10)
			b = append(b, ')')
		} else {
			b = append(b, " (not a usable physical address)"...)
		}
	}
	b = append(b, ", status "...)
	b = appendHex(b, r.Status)
	return string(b)
}

func appendHex(b []byte, v uint64) []byte {
	b = append(b, "0x"...)
	return strconv.AppendUint(b, v, 16)
}
