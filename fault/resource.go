package fault

import (
	"fmt"
	"strconv"
	"strings"
)

// Resource identifies what a rate engine counts against and what a case
// names as suspect: "cpu:2", "page:0x2d94", "dimm:mc0/CPU_SrcID#0_Ha#0_Chan#0_DIMM#0",
// "row:mc0/csrow3/row1234", "socket:0", "machine".
type Resource string

// Kinds of resource, the prefix before the first colon.
const (
	KindCPU     = "cpu"
	KindPage    = "page"
	KindDIMM    = "dimm"
	KindRow     = "row"
	KindSocket  = "socket"
	KindMachine = "machine"
)

// Machine is the single machine-wide resource (storms).
const Machine Resource = KindMachine

func CPU(n int) Resource       { return Resource(KindCPU + ":" + strconv.Itoa(n)) }
func Page(pfn uint64) Resource { return Resource(KindPage + ":" + Hex(pfn)) }
func Socket(n int) Resource    { return Resource(KindSocket + ":" + strconv.Itoa(n)) }
func Row(key string) Resource  { return Resource(KindRow + ":" + key) }
func DIMM(mc int, label string) Resource {
	return Resource(fmt.Sprintf("%s:mc%d/%s", KindDIMM, mc, label))
}

// Hex writes v as fmt's %#x does ("0x2d94"), without fmt: page names and
// case texts are made on the way from a deciding error to its isolation,
// where fmt's machinery, cold after an idle spell, costs more under
// emulation than the text it makes.
func Hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// Kind is the resource's prefix ("cpu", "page", ...).
func (r Resource) Kind() string {
	k, _, _ := strings.Cut(string(r), ":")
	return k
}

// CPUNumber returns N for "cpu:N".
func (r Resource) CPUNumber() (int, error) {
	k, v, ok := strings.Cut(string(r), ":")
	if !ok || k != KindCPU {
		return 0, fmt.Errorf("resource %q is not a CPU", r)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("resource %q: bad CPU number", r)
	}
	return n, nil
}

// PFN returns the page frame number for "page:0xPFN".
func (r Resource) PFN() (uint64, error) {
	k, v, ok := strings.Cut(string(r), ":")
	if !ok || k != KindPage {
		return 0, fmt.Errorf("resource %q is not a page", r)
	}
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("resource %q: bad PFN: %w", r, err)
	}
	return n, nil
}

// ParseResource validates a resource identifier typed by an operator.
func ParseResource(s string) (Resource, error) {
	r := Resource(s)
	switch r.Kind() {
	case KindCPU:
		_, err := r.CPUNumber()
		return r, err
	case KindPage:
		_, err := r.PFN()
		return r, err
	case KindDIMM, KindRow, KindSocket:
		if _, v, _ := strings.Cut(s, ":"); v == "" {
			return "", fmt.Errorf("resource %q: empty identifier", s)
		}
		return r, nil
	case KindMachine:
		if s != KindMachine {
			return "", fmt.Errorf("resource %q: want just %q", s, KindMachine)
		}
		return r, nil
	}
	return "", fmt.Errorf("resource %q: unknown kind (want cpu:N, page:0xPFN, dimm:mcM/LABEL, row:KEY, socket:N or machine)", s)
}
