// Package edac reads the kernel's EDAC memory-controller view: the sysfs
// counters under devices/system/edac/mc (polled for deltas) and the
// ras:mc_event tracepoint (decoded record by record). Both become
// fault.Events of class memory that name the DIMM by its label.
package edac

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
)

// ErrNoEDAC says no EDAC memory controller is registered: no driver bound,
// or EDAC not built. That is normal on VMs and desktops; log it at debug.
var ErrNoEDAC = errors.New("no EDAC memory controller")

// FileError is one sysfs attribute that could not be read or parsed.
// errors.Is sees through it to the errno (syscall.EIO, fs.ErrPermission).
type FileError struct {
	Op   string // "reading" or "parsing"
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// mcRoot is where the kernel registers memory controllers, relative to sysfs.
const mcRoot = "devices/system/edac/mc"

// Controller is one mcN directory.
type Controller struct {
	Index             int
	Name              string
	SizeMB            uint64
	CE, UE            uint64
	CENoInfo          uint64
	UENoInfo          uint64
	SecondsSinceReset uint64
	DIMMs             []DIMM
	CSRows            []CSRow
	// Errs lists files of the controller itself that could not be read or
	// parsed; the values they hold are left zero.
	Errs []error
}

// DIMM is one dimmN (or rankN, on drivers that count per chip-select rank)
// directory.
type DIMM struct {
	Index    int
	Kind     string // "dimm" or "rank"
	Label    string
	Location string // dimm_location as the kernel wrote it, trimmed
	// Layers is Location decoded into the controller's layer indexes
	// (fault.Unknown where the controller has fewer layers or Location did
	// not parse).
	Layers                     [3]int
	MemType, EdacMode, DevType string
	SizeMB, CE, UE             uint64
	// Errs lists this DIMM's unreadable or malformed files. A DIMM with
	// errors has untrustworthy counters for this read.
	Errs []error
}

// CSRow is one legacy csrowN directory (CONFIG_EDAC_LEGACY_SYSFS).
type CSRow struct {
	Index          int
	CE, UE, SizeMB uint64
	MemType        string
	EdacMode       string
	Channels       []Channel
	Errs           []error
}

// Channel is one chN_ce_count / chN_dimm_label pair of a csrow.
type Channel struct {
	Index int
	Label string
	CE    uint64
}

// maxLegacyChannels is how many chN_* attributes the kernel can create per
// csrow (ch0..ch7).
const maxLegacyChannels = 8

// ReadControllers reads every memory controller. It returns ErrNoEDAC when
// the mc directory is missing or holds no mcN. A file that cannot be read is
// not fatal: its value stays zero, it is listed in the owning Errs, and the
// returned error joins all of them next to the controllers read.
func ReadControllers(p kpath.Paths, fsys kpath.FS) ([]Controller, error) {
	root := p.SysPath(mcRoot)
	entries, err := fsys.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoEDAC
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", root, err)
	}
	var ctrls []Controller
	var all []error
	for _, e := range entries {
		idx, ok := indexedName(e.Name(), "mc")
		if !ok {
			continue // power/, subsystem, uevent
		}
		c, err := readController(fsys, filepath.Join(root, e.Name()), idx)
		if err != nil {
			all = append(all, err)
			continue
		}
		ctrls = append(ctrls, c)
		all = append(all, c.allErrs()...)
	}
	if len(ctrls) == 0 && len(all) == 0 {
		return nil, ErrNoEDAC
	}
	sort.Slice(ctrls, func(i, j int) bool { return ctrls[i].Index < ctrls[j].Index })
	return ctrls, errors.Join(all...)
}

func (c *Controller) allErrs() []error {
	errs := append([]error(nil), c.Errs...)
	for _, d := range c.DIMMs {
		errs = append(errs, d.Errs...)
	}
	for _, r := range c.CSRows {
		errs = append(errs, r.Errs...)
	}
	return errs
}

// indexedName returns N for a name "<prefix>N" with N decimal digits only.
func indexedName(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || len(rest) > 9 {
		return 0, false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// attrReader reads the files of one directory and collects what went wrong.
type attrReader struct {
	fsys kpath.FS
	dir  string
	errs []error
}

// text reads a string attribute. A missing optional file is not an error
// (attributes come and go between kernel versions); any other failure is.
func (a *attrReader) text(name string, required bool) string {
	path := filepath.Join(a.dir, name)
	b, err := a.fsys.ReadFile(path)
	if err != nil {
		if !required && errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		a.errs = append(a.errs, &FileError{Op: "reading", Path: path, Err: err})
		return ""
	}
	// Labels may contain spaces ("N0 DIMM_A0"); only the newline the kernel
	// appends is not part of the value.
	return strings.TrimSuffix(string(b), "\n")
}

// counter reads an unsigned decimal attribute; counters are always required.
func (a *attrReader) counter(name string) uint64 { return a.readCounter(name, false) }

// optCounter reads a number that some kernels do not expose (size, size_mb).
func (a *attrReader) optCounter(name string) uint64 { return a.readCounter(name, true) }

func (a *attrReader) readCounter(name string, optional bool) uint64 {
	path := filepath.Join(a.dir, name)
	b, err := a.fsys.ReadFile(path)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		a.errs = append(a.errs, &FileError{Op: "reading", Path: path, Err: err})
		return 0
	}
	n, err := ParseCounter(string(b))
	if err != nil {
		a.errs = append(a.errs, &FileError{Op: "parsing", Path: path, Err: err})
		return 0
	}
	return n
}

// ParseCounter parses a sysfs counter ("17\n"). The kernel prints these with
// %u or %d; a negative value would be a wrapped u32 and is refused rather
// than guessed at.
func ParseCounter(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty counter")
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %q is not an unsigned decimal number", t)
	}
	return n, nil
}

func readController(fsys kpath.FS, dir string, idx int) (Controller, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return Controller{}, fmt.Errorf("listing %s: %w", dir, err)
	}
	a := &attrReader{fsys: fsys, dir: dir}
	c := Controller{
		Index:             idx,
		Name:              strings.TrimSpace(a.text("mc_name", false)),
		SizeMB:            a.optCounter("size_mb"),
		CE:                a.counter("ce_count"),
		UE:                a.counter("ue_count"),
		CENoInfo:          a.counter("ce_noinfo_count"),
		UENoInfo:          a.counter("ue_noinfo_count"),
		SecondsSinceReset: a.optCounter("seconds_since_reset"),
	}
	c.Errs = a.errs
	for _, e := range entries {
		name := e.Name()
		if n, ok := indexedName(name, "dimm"); ok {
			c.DIMMs = append(c.DIMMs, readDIMM(fsys, filepath.Join(dir, name), n, "dimm"))
		} else if n, ok := indexedName(name, "rank"); ok {
			c.DIMMs = append(c.DIMMs, readDIMM(fsys, filepath.Join(dir, name), n, "rank"))
		} else if n, ok := indexedName(name, "csrow"); ok {
			r, err := readCSRow(fsys, filepath.Join(dir, name), n)
			if err != nil {
				c.Errs = append(c.Errs, err)
				continue
			}
			c.CSRows = append(c.CSRows, r)
		}
	}
	sort.Slice(c.DIMMs, func(i, j int) bool { return c.DIMMs[i].Index < c.DIMMs[j].Index })
	sort.Slice(c.CSRows, func(i, j int) bool { return c.CSRows[i].Index < c.CSRows[j].Index })
	return c, nil
}

func readDIMM(fsys kpath.FS, dir string, idx int, kind string) DIMM {
	a := &attrReader{fsys: fsys, dir: dir}
	d := DIMM{
		Index:    idx,
		Kind:     kind,
		Label:    a.text("dimm_label", true),
		Location: strings.TrimSpace(a.text("dimm_location", false)),
		MemType:  strings.TrimSpace(a.text("dimm_mem_type", false)),
		EdacMode: strings.TrimSpace(a.text("dimm_edac_mode", false)),
		DevType:  strings.TrimSpace(a.text("dimm_dev_type", false)),
		SizeMB:   a.optCounter("size"),
		CE:       a.counter("dimm_ce_count"),
		UE:       a.counter("dimm_ue_count"),
		Layers:   [3]int{fault.Unknown, fault.Unknown, fault.Unknown},
	}
	if d.Location != "" {
		if layers, err := ParseLocation(d.Location); err == nil {
			d.Layers = LayerIndexes(layers)
		}
	}
	d.Errs = a.errs
	return d
}

func readCSRow(fsys kpath.FS, dir string, idx int) (CSRow, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return CSRow{}, fmt.Errorf("listing %s: %w", dir, err)
	}
	a := &attrReader{fsys: fsys, dir: dir}
	r := CSRow{
		Index:    idx,
		CE:       a.counter("ce_count"),
		UE:       a.counter("ue_count"),
		SizeMB:   a.optCounter("size_mb"),
		MemType:  strings.TrimSpace(a.text("mem_type", false)),
		EdacMode: strings.TrimSpace(a.text("edac_mode", false)),
	}
	// The kernel shows chN_* only for populated channels, so the listing,
	// not a fixed range, says which channels exist.
	present := map[int]bool{}
	for _, e := range entries {
		rest, ok := strings.CutSuffix(e.Name(), "_ce_count")
		if !ok {
			continue
		}
		if n, ok := indexedName(rest, "ch"); ok && n < maxLegacyChannels {
			present[n] = true
		}
	}
	for ch := 0; ch < maxLegacyChannels; ch++ {
		if !present[ch] {
			continue
		}
		r.Channels = append(r.Channels, Channel{
			Index: ch,
			CE:    a.counter(fmt.Sprintf("ch%d_ce_count", ch)),
			Label: a.text(fmt.Sprintf("ch%d_dimm_label", ch), false),
		})
	}
	r.Errs = a.errs
	return r, nil
}
