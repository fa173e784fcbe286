package replay

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/mce"
)

// mcelog's text log (/var/log/mcelog) holds one block per machine check,
// as mcelog's dump_mce prints it:
//
//	Hardware event. This is not a software error.
//	MCE 0
//	CPU 1 BANK 7 TSC 5333b1a9b
//	MISC 8c ADDR 2d94040
//	TIME 1795607192 Wed Nov 25 11:46:32 2026
//	MCA: MEMORY CONTROLLER RD_CHANNEL0_ERR        (decoded text, ignored)
//	STATUS 9c00000000000090 MCGSTATUS 0
//	MCGCAP 1000c0a APICID 0 SOCKETID 0
//	CPUID Vendor Intel Family 6 Model 85 Step 4
//
// Registers are hex without 0x. Blocks for extended banks (THERMAL EVENT,
// APEI, timeouts) carry no MCA bank and are skipped. A block without TIME
// or STATUS is an error: replay needs both.
const mcelogStart = "Hardware event. This is not a software error."

// ReadMcelog parses an mcelog text log as one host's records. Memory and
// CPU errors both come from it (mcelog reads /dev/mcelog, the MCE path).
func ReadMcelog(name string, in io.Reader, host string) ([]Record, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		out   []Record
		blk   *mcelogBlock
		lineN int
	)
	flush := func() error {
		if blk == nil || blk.skip {
			return nil
		}
		rec, err := blk.record(name, host)
		if err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	}
	for sc.Scan() {
		lineN++
		line := strings.TrimSpace(sc.Text())
		// Syslog copies prefix each line with "mcelog: ".
		line = strings.TrimPrefix(line, "mcelog: ")
		if line == mcelogStart {
			if err := flush(); err != nil {
				return nil, err
			}
			blk = &mcelogBlock{line: lineN}
			continue
		}
		if blk == nil || blk.skip || line == "" {
			continue
		}
		if err := blk.parse(name, lineN, line); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	// mcelog logs in the order it reads; CPUs' records may cross by a
	// second, and replay wants each host's records in time order.
	slices.SortStableFunc(out, func(a, b Record) int { return a.Event.Received.Compare(b.Event.Received) })
	return out, nil
}

type mcelogBlock struct {
	line               int
	r                  mce.Record
	haveCPU, haveStat  bool
	haveTime, skip     bool
	family, model, stp uint32
}

// parse reads the fields of one line ("KEY value KEY value ...").
func (b *mcelogBlock) parse(file string, n int, line string) error {
	f := strings.Fields(line)
	bad := func(field, format string, args ...any) error {
		return &LineError{File: file, Line: n, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	hexAt := func(i int, field string) (uint64, error) {
		if i >= len(f) {
			return 0, bad(field, "missing value")
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i], "0x"), 16, 64)
		if err != nil {
			return 0, bad(field, "want hex, got %q", f[i])
		}
		return v, nil
	}
	switch f[0] {
	case "CPU":
		if b.haveCPU {
			return nil
		}
		if len(f) < 3 {
			return bad("CPU", "want \"CPU n BANK m\", got %q", line)
		}
		cpu, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return bad("CPU", "want a CPU number, got %q", f[1])
		}
		if f[2] != "BANK" {
			b.skip = true // THERMAL EVENT, APEI, timeout: no MCA bank
			return nil
		}
		if len(f) < 4 {
			return bad("BANK", "missing value")
		}
		bank, err := strconv.ParseUint(f[3], 10, 8)
		if err != nil {
			return bad("BANK", "want a bank number 0-255, got %q", f[3])
		}
		b.r.CPU, b.r.Bank, b.haveCPU = uint32(cpu), uint8(bank), true
	case "MISC", "ADDR", "STATUS", "MCGCAP":
		for i := 0; i+1 < len(f); i += 2 {
			var dst *uint64
			switch f[i] {
			case "MISC":
				dst = &b.r.Misc
			case "ADDR":
				dst = &b.r.Addr
			case "STATUS":
				dst = &b.r.Status
				b.haveStat = true
			case "MCGSTATUS":
				dst = &b.r.MCGStatus
			case "MCGCAP":
				dst = &b.r.MCGCap
			case "APICID", "SOCKETID":
				v, err := hexAt(i+1, f[i])
				if err != nil {
					return err
				}
				if f[i] == "APICID" {
					b.r.APICID = uint32(v)
				} else {
					b.r.SocketID = uint32(v)
				}
				continue
			default:
				continue
			}
			v, err := hexAt(i+1, f[i])
			if err != nil {
				return err
			}
			*dst = v
		}
	case "TIME":
		if len(f) < 2 {
			return bad("TIME", "missing value")
		}
		t, err := strconv.ParseUint(f[1], 10, 63)
		if err != nil {
			return bad("TIME", "want seconds since the epoch, got %q", f[1])
		}
		b.r.Walltime, b.haveTime = t, true
	case "CPUID":
		// CPUID Vendor Intel Family 6 Model 85 Step 4
		for i := 1; i+1 < len(f); i += 2 {
			switch f[i] {
			case "Vendor":
				switch f[i+1] {
				case "Intel":
					b.r.CPUVendor = 0
				case "AMD":
					b.r.CPUVendor = 2
				default:
					return bad("Vendor", "want Intel or AMD, got %q", f[i+1])
				}
			case "Family", "Model", "Step":
				v, err := strconv.ParseUint(f[i+1], 10, 32)
				if err != nil {
					return bad(f[i], "want a number, got %q", f[i+1])
				}
				switch f[i] {
				case "Family":
					b.family = uint32(v)
				case "Model":
					b.model = uint32(v)
				default:
					b.stp = uint32(v)
				}
			}
		}
		b.r.CPUID = cpuidOf(b.family, b.model, b.stp)
	}
	return nil
}

// cpuidOf rebuilds CPUID leaf 1 EAX from the family, model and stepping
// mcelog printed (the decoder tells SMCA AMD parts by family).
func cpuidOf(family, model, step uint32) uint32 {
	eax := step&0xf | (model&0xf)<<4 | (model>>4&0xf)<<16
	if family <= 0xf {
		return eax | family<<8
	}
	return eax | 0xf<<8 | (family-0xf)&0xff<<20
}

func (b *mcelogBlock) record(file, host string) (Record, error) {
	fail := func(field, msg string) error {
		return &LineError{File: file, Line: b.line, Field: field, Msg: msg}
	}
	switch {
	case !b.haveCPU:
		return Record{}, fail("CPU", "machine check block without a \"CPU n BANK m\" line")
	case !b.haveStat:
		return Record{}, fail("STATUS", "machine check block without STATUS")
	case !b.haveTime:
		return Record{}, fail("TIME", "machine check block without TIME (replay needs each record's time)")
	}
	t := time.Unix(int64(b.r.Walltime), 0).UTC()
	ev := mce.ToEvent(b.r, mce.Decode(b.r), t, fault.SourceMcelog)
	ev.Received, ev.Recorded = t, t
	return Record{Line: b.line, Host: host, Event: ev}, nil
}
