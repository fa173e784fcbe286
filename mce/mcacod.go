package mce

import (
	"strconv"

	"github.com/selfprotect/selfprotect/fault"
)

// errorCode is what the architectural MCACOD says on its own, before the
// vendor and the bank refine it.
type errorCode struct {
	class fault.Class
	// level is LL (0, 1, 2) for cache and TLB codes, fault.Unknown for the
	// "generic" level and for every other class.
	level           int
	cacheType       string // TT for cache and TLB codes
	transactionType string // RRRR for cache and bus codes, MMM for memory codes
	what            string // a short human name for the code
}

var (
	llLevels  = [4]int{0, 1, 2, fault.Unknown}
	ttNames   = [4]string{"instruction", "data", "generic", "reserved"}
	iiNames   = [4]string{"memory", "reserved", "io", "other"}
	ppNames   = [4]string{"source", "responder", "observer", "generic"}
	rrrrNames = [16]string{"generic", "read", "write", "data-read", "data-write", "instruction-fetch", "prefetch", "eviction", "snoop"}
	mmmNames  = [8]string{"generic", "read", "write", "address-command", "scrub"}
)

// simpleCodeName names the simple (non-compound) error codes.
func simpleCodeName(c uint16) string {
	switch c {
	case 0x0000:
		return "no error"
	case 0x0001:
		return "unclassified"
	case 0x0002:
		return "microcode ROM parity"
	case 0x0003:
		return "external error"
	case 0x0004:
		return "FRC error"
	case 0x0005:
		return "internal parity"
	case 0x0006:
		return "SMM handler code access violation"
	case 0x0400:
		return "internal timer"
	}
	return "error code 0x" + strconv.FormatUint(uint64(c), 16)
}

func nameOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// decodeMCACOD classifies a compound error code (Intel SDM vol. 3B §16.9.2;
// AMD uses the same encoding for its bank status low word). Bit 12, the
// corrected-error filtering flag, is ignored.
func decodeMCACOD(code uint16) errorCode {
	c := code & mcacodMask
	ec := errorCode{class: fault.ClassOther, level: fault.Unknown}
	switch {
	case c&0xf800 == 0x0800: // 0000 1PPT RRRR IILL
		ec.class = fault.ClassBus
		ec.transactionType = nameOr(rrrrNames[(c>>4)&0xf], "reserved")
		timeout := ""
		if c&0x0100 != 0 {
			timeout = " timeout"
		}
		ec.what = "bus/interconnect " + ppNames[(c>>9)&3] + " " + ec.transactionType + " " + iiNames[(c>>2)&3] + timeout
	case c&0xff00 == 0x0100: // 0000 0001 RRRR TTLL
		ec.class = fault.ClassCache
		ec.level = llLevels[c&3]
		ec.cacheType = ttNames[(c>>2)&3]
		ec.transactionType = nameOr(rrrrNames[(c>>4)&0xf], "reserved")
		ec.what = levelName(ec.level) + " cache " + ec.cacheType + " " + ec.transactionType
	case c&0xff80 == 0x0080: // 0000 0000 1MMM CCCC
		ec.class = fault.ClassMemory
		ec.transactionType = nameOr(mmmNames[(c>>4)&7], "reserved")
		ch := "channel unknown"
		if c&0xf != 0xf {
			ch = "channel " + strconv.Itoa(int(c&0xf))
		}
		ec.what = "memory controller " + ec.transactionType + ", " + ch
	case c&0xfff0 == 0x0010: // 0000 0000 0001 TTLL
		ec.class = fault.ClassTLB
		ec.level = llLevels[c&3]
		ec.cacheType = ttNames[(c>>2)&3]
		ec.what = levelName(ec.level) + " TLB " + ec.cacheType
	case c&0xfffc == 0x000c: // 0000 0000 0000 11LL: generic cache hierarchy
		ec.class = fault.ClassCache
		ec.level = llLevels[c&3]
		ec.cacheType = "generic"
		ec.transactionType = "generic"
		ec.what = levelName(ec.level) + " cache hierarchy"
	case c&0xfc00 == 0x0400 && c != 0x0400: // 0000 01xx xxxx xxxx
		ec.what = "internal unclassified"
	default:
		ec.what = simpleCodeName(c)
	}
	return ec
}

var levelNames = [3]string{"L0", "L1", "L2"}

func levelName(level int) string {
	if level >= 0 && level < len(levelNames) {
		return levelNames[level]
	}
	return "generic-level"
}
