package edac

import (
	"strconv"
	"strings"
)

// detailKeys maps the names drivers use in driver_detail to one spelling
// each, in the order they appear in a row key (outermost first). skx/i10nm
// write "socket:0 imc:1 rank:0 bg:1 ba:2 row:0x1234 col:0x10"; their ADXL
// path writes "ProcessorSocketId:0x0 MemoryControllerId:0x1 PhysicalRankId:0x0
// Row:0x1234 ... Bank:0x2 BankGroup:0x1"; ghes/CPER writes "node:1 card:3
// module:0 rank:0 bank:256 ... row:1234 col:10 bit_pos:16".
var detailKeys = map[string]string{
	"node":               "node",
	"socket":             "socket",
	"processorsocketid":  "socket",
	"imc":                "imc",
	"memorycontrollerid": "imc",
	"card":               "card",
	"module":             "module",
	"chan":               "chan",
	"channel":            "chan",
	"channelid":          "chan",
	"rank":               "rank",
	"physicalrankid":     "rank",
	"bg":                 "bg",
	"bank_group":         "bg",
	"bankgroup":          "bg",
	"bank":               "bank",
	"ba":                 "bank",
	"bank_address":       "bank",
	"bankaddress":        "bank",
	"row":                "row",
}

// keyOrder is the order of the canonical names in a row key.
var keyOrder = []string{"node", "socket", "imc", "card", "module", "chan", "rank", "bg", "bank"}

// ParseDetail extracts the numeric "name:value" pairs of a driver_detail
// string that locate a DRAM cell, keyed by canonical name (see detailKeys).
// Values are decimal, or hex with 0x. The first occurrence of a name wins;
// anything unparsable is skipped, as driver_detail is free text.
func ParseDetail(detail string) map[string]uint64 {
	out := map[string]uint64{}
	for _, tok := range strings.FieldsFunc(detail, func(r rune) bool {
		return r == ' ' || r == '\t' || r == ',' || r == ';' || r == '\n'
	}) {
		name, val, ok := strings.Cut(tok, ":")
		if !ok {
			continue
		}
		canon, ok := detailKeys[strings.ToLower(name)]
		if !ok {
			continue
		}
		if _, dup := out[canon]; dup {
			continue
		}
		n, ok := parseDetailNumber(val)
		if !ok {
			continue
		}
		out[canon] = n
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
	f := ParseDetail(detail)
	row, ok := f["row"]
	if !ok {
		return ""
	}
	var b strings.Builder
	b.WriteString("mc")
	b.WriteString(strconv.Itoa(mc))
	b.WriteByte('/')
	for i, l := range layers {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(l))
	}
	for _, k := range keyOrder {
		if v, ok := f[k]; ok {
			b.WriteByte('/')
			b.WriteString(k)
			b.WriteString(strconv.FormatUint(v, 10))
		}
	}
	b.WriteString("/row")
	b.WriteString(strconv.FormatUint(row, 10))
	return b.String()
}
