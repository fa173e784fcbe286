package edac

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/tracefs"
)

// memory_failure_event's enum mf_action_page_type and enum mf_result, as the
// event's print fmt lists them (include/ras/ras_event.h).
var (
	mfPageTypes = map[int64]string{
		0: "reserved kernel page", 1: "high-order kernel page", 3: "huge page", 4: "free huge page",
		5: "get hwpoison page", 6: "unmapping failed page", 7: "dirty swapcache page", 8: "clean swapcache page",
		9: "dirty mlocked LRU page", 10: "clean mlocked LRU page", 11: "dirty unevictable LRU page",
		12: "clean unevictable LRU page", 13: "dirty LRU page", 14: "clean LRU page",
		15: "already truncated LRU page", 16: "free buddy page", 17: "dax page", 18: "unsplit thp",
		19: "already poisoned", 20: "unknown page",
	}
	mfResults = map[int64]string{0: "Ignored", 1: "Failed", 2: "Delayed", 3: "Recovered"}
)

// MemoryFailureDecoder decodes ras:memory_failure_event: the kernel's
// memory-failure handler acted on a page (an uncorrected error it handled
// itself, a hard_offline_page write, a firmware request). It is not an
// error report: the event says the page is (being) taken out of service by
// the kernel, and its Detail says how that went.
func MemoryFailureDecoder(rec *tracefs.Record, received time.Time) ([]fault.Event, error) {
	ev := fault.NewEvent(fault.SourceTraceMemoryFailure, received)
	if rec == nil || rec.Format == nil {
		return nil, errors.New("memory_failure_event: no record or no format")
	}
	r := fieldReader{rec: rec}
	pfn := r.uint("pfn")
	typ := r.int("type")
	res := r.int("result")
	if r.err != nil {
		return nil, fmt.Errorf("decoding memory_failure_event: %w", r.err)
	}
	ev.Class = fault.ClassMemory
	ev.Severity = fault.SeverityUncorrectedRecoverable
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pfn*fault.PageSize, true, 12
	ev.Detail = fmt.Sprintf("kernel memory_failure on pfn %#x: recovery action for %s: %s",
		pfn, nameOf(mfPageTypes, typ, "page type"), nameOf(mfResults, res, "result"))
	return []fault.Event{ev}, nil
}

func nameOf(m map[int64]string, v int64, what string) string {
	if s, ok := m[v]; ok {
		return s
	}
	return fmt.Sprintf("%s %d", what, v)
}

// CPER severities (UEFI spec, N.2.1) as extlog_mem_event's sev.
const (
	cperSevRecoverable = 0
	cperSevFatal       = 1
	cperSevCorrected   = 2
	cperSevInfo        = 3
)

// cper_mem_err_compact validation bits and layout (include/linux/cper.h):
// validation_bits u64, then node, card, module, bank, device, row, column,
// bit_pos as u16, three u64 ids, rank u16, ... packed.
const (
	cperMemValidNode   = 0x0008
	cperMemValidCard   = 0x0010
	cperMemValidModule = 0x0020
	cperMemValidBank   = 0x0040
	cperMemValidRow    = 0x0100
	cperMemValidRank   = 0x8000

	compactNode   = 8
	compactCard   = 10
	compactModule = 12
	compactBank   = 14
	compactRow    = 18
	compactRank   = 48
	compactMinLen = 50
)

// ExtlogDecoder decodes ras:extlog_mem_event, Intel eMCA's firmware-first
// memory error record: physical address and its precision, CPER severity,
// the FRU text firmware gives the DIMM, and the CPER location from which a
// DRAM row key is built when node, card, module, bank and row are valid.
// Informational records yield nothing.
func ExtlogDecoder(rec *tracefs.Record, received time.Time) ([]fault.Event, error) {
	ev := fault.NewEvent(fault.SourceTraceExtlog, received)
	if rec == nil || rec.Format == nil {
		return nil, errors.New("extlog_mem_event: no record or no format")
	}
	r := fieldReader{rec: rec}
	seq := r.uint("err_seq")
	sev := r.uint("sev")
	pa := r.uint("pa")
	lsb := r.uint("pa_mask_lsb")
	fru := strings.TrimSpace(r.str("fru_text"))
	if r.err != nil {
		return nil, fmt.Errorf("decoding extlog_mem_event: %w", r.err)
	}
	switch sev {
	case cperSevCorrected:
		ev.Severity = fault.SeverityCorrected
	case cperSevRecoverable:
		ev.Severity = fault.SeverityUncorrectedRecoverable
	case cperSevFatal:
		ev.Severity = fault.SeverityFatal
	case cperSevInfo:
		return nil, nil
	default:
		return nil, fmt.Errorf("decoding extlog_mem_event: unknown CPER severity %d", sev)
	}
	ev.Class = fault.ClassMemory
	ev.PhysAddr, ev.AddrValid, ev.AddrLSB = pa, pa != 0, uint8(min(lsb, 64))
	ev.DIMMLabel = fru
	if fld, ok := rec.Format.Field("data"); ok && fld.Offset+fld.Size <= len(rec.Data) && fld.Size >= compactMinLen {
		ev.Row = cperRow(rec.Data[fld.Offset : fld.Offset+fld.Size])
	}
	ev.Detail = fmt.Sprintf("eMCA #%d %s memory error at %#x (lsb %d) FRU %q", seq, ev.Severity, pa, lsb, fru)
	return []fault.Event{ev}, nil
}

// cperRow is the DRAM row a compact CPER memory error names, "" unless the
// firmware marked every part of it valid.
func cperRow(d []byte) string {
	valid := binary.LittleEndian.Uint64(d)
	need := uint64(cperMemValidNode | cperMemValidCard | cperMemValidModule | cperMemValidBank | cperMemValidRow)
	if valid&need != need {
		return ""
	}
	u := func(off int) uint16 { return binary.LittleEndian.Uint16(d[off:]) }
	key := fmt.Sprintf("cper/node%d/card%d/module%d", u(compactNode), u(compactCard), u(compactModule))
	if valid&cperMemValidRank != 0 {
		key += fmt.Sprintf("/rank%d", u(compactRank))
	}
	return key + fmt.Sprintf("/bank%d/row%d", u(compactBank), u(compactRow))
}
