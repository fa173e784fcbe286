package edac

import (
	"strconv"
	"strings"
)

// Canonical coordinate names, outermost first: the order of a row key.
var coordNames = [...]string{"node", "socket", "imc", "card", "module", "chan", "rank", "bg", "bank", "row"}

const (
	coordRow = 9
)

// coordIndex maps the names drivers use in driver_detail (lower-cased) to a
// coordNames index. skx/i10nm write "socket:0 imc:1 rank:0 bg:1 ba:2
// row:0x1234 col:0x10"; their ADXL path writes "ProcessorSocketId:0x0
// MemoryControllerId:0x1 PhysicalRankId:0x0 Row:0x1234 ... Bank:0x2
// BankGroup:0x1"; ghes/CPER writes "node:1 card:3 module:0 rank:0 bank:256
// ... row:1234 col:10 bit_pos:16".
func coordIndex(name string) int {
	switch name {
	case "node":
		return 0
	case "socket", "processorsocketid":
		return 1
	case "imc", "memorycontrollerid":
		return 2
	case "card":
		return 3
	case "module":
		return 4
	case "chan", "channel", "channelid":
		return 5
	case "rank", "physicalrankid":
		return 6
	case "bg", "bank_group", "bankgroup":
		return 7
	case "bank", "ba", "bank_address", "bankaddress":
		return 8
	case "row":
		return coordRow
	}
	return -1
}

type coords struct {
	val [len(coordNames)]uint64
	ok  [len(coordNames)]bool
}

func isDetailSep(c byte) bool {
	return c == ' ' || c == '\t' || c == ',' || c == ';' || c == '\n'
}

// parseCoords scans driver_detail without allocating in the common case
// (lower-case names): it runs once per mc_event.
func parseCoords(detail string) coords {
	var c coords
	for i := 0; i < len(detail); {
		for i < len(detail) && isDetailSep(detail[i]) {
			i++
		}
		start := i
		for i < len(detail) && !isDetailSep(detail[i]) {
			i++
		}
		name, val, ok := strings.Cut(detail[start:i], ":")
		if !ok || len(name) > 20 {
			continue
		}
		idx := coordIndex(name)
		if idx < 0 {
			idx = coordIndex(strings.ToLower(name))
		}
		if idx < 0 || c.ok[idx] {
			continue
		}
		if n, ok := parseDetailNumber(val); ok {
			c.val[idx], c.ok[idx] = n, true
		}
	}
	return c
}

// ParseDetail extracts the numeric "name:value" pairs of a driver_detail
// string that locate a DRAM cell, keyed by canonical name (node, socket,
// imc, card, module, chan, rank, bg, bank, row). Values are decimal, or hex
// with 0x. The first occurrence of a name wins; anything unparsable is
// skipped, as driver_detail is free text.
func ParseDetail(detail string) map[string]uint64 {
	c := parseCoords(detail)
	out := map[string]uint64{}
	for i, name := range coordNames {
		if c.ok[i] {
			out[name] = c.val[i]
		}
	}
	return out
}

func parseDetailNumber(s string) (uint64, bool) {
	base := 10
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		s, base = h, 16
	} else if h, ok := strings.CutPrefix(s, "0X"); ok {
		s, base = h, 16
	}
	n, err := strconv.ParseUint(s, base, 64)
	return n, err == nil
}

// RowKey names the DRAM row an mc_event hit, "" when driver_detail has no
// row. The key carries the controller, the layers and every bank coordinate
// the driver gave, so that rows of two DIMMs (or two banks) never share a
// key: "mc0/2:0:-1/socket0/imc1/rank0/bg1/bank2/row4660".
func RowKey(mc int, layers [3]int, detail string) string {
	c := parseCoords(detail)
	if !c.ok[coordRow] {
		return ""
	}
	b := make([]byte, 0, 64)
	b = append(b, "mc"...)
	b = strconv.AppendInt(b, int64(mc), 10)
	b = append(b, '/')
	for i, l := range layers {
		if i > 0 {
			b = append(b, ':')
		}
		b = strconv.AppendInt(b, int64(l), 10)
	}
	for i, name := range coordNames {
		if !c.ok[i] {
			continue
		}
		b = append(b, '/')
		b = append(b, name...)
		b = strconv.AppendUint(b, c.val[i], 10)
	}
	return string(b)
}
