package mce

// MCi_STATUS bits shared by Intel and AMD (Intel SDM vol. 3B §16.3.2.2, AMD
// APM vol. 2 §9.3).
const (
	StatusVAL   = uint64(1) << 63 // the register holds a valid error
	StatusOVER  = uint64(1) << 62 // a second error arrived before software read the first
	StatusUC    = uint64(1) << 61 // uncorrected
	StatusEN    = uint64(1) << 60 // reporting of this error was enabled
	StatusMISCV = uint64(1) << 59 // MCi_MISC holds data
	StatusADDRV = uint64(1) << 58 // MCi_ADDR holds data
	StatusPCC   = uint64(1) << 57 // processor context corrupt
)

// Intel-only bits, meaningful when MCG_CAP.SER_P is set.
const (
	StatusS  = uint64(1) << 56 // signalled as a machine check (not CMCI/poll)
	StatusAR = uint64(1) << 55 // software must act before resuming
)

// AMD-only bits.
const (
	StatusTCC      = uint64(1) << 55 // task context corrupt
	StatusDeferred = uint64(1) << 44 // uncorrected but not consumed yet
	StatusPoison   = uint64(1) << 43 // poisoned data was consumed (not in legacy bank 4)
	StatusSyndV    = uint64(1) << 53 // SMCA: MCA_SYND holds data
)

// MCGCapSERP is MCG_CAP bit 24: the CPU supports software error recovery,
// which gives the S and AR bits and MISC's address mode their meaning.
const MCGCapSERP = uint64(1) << 24

// mcacodMask drops bit 12, the corrected-error filtering flag, so that the
// compound error code patterns match whether or not filtering happened.
const mcacodMask = 0xefff

// MCACOD returns the architectural error code, bits 15:0 of the status.
func MCACOD(status uint64) uint16 { return uint16(status) }

// amdXEC returns AMD's extended error code; legacy families use bits 20:16,
// SMCA bits 21:16.
func amdXEC(status uint64, mask uint64) uint8 { return uint8((status >> 16) & mask) }

// Intel MCi_MISC address fields (valid with MISCV and SER_P).
const (
	miscAddrModePhysical = 2
)

func miscAddrLSB(misc uint64) uint8  { return uint8(misc & 0x3f) }
func miscAddrMode(misc uint64) uint8 { return uint8((misc >> 6) & 0x7) }
