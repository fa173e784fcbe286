package edac

import (
	"regexp"
	"strconv"

	"github.com/selfprotect/selfprotect/fault"
)

// Slot is where one DIMM (or, on amd64_edac, one rank) sits, as far as
// sysfs tells: what a memory location read from an MCA record (socket,
// channel, chip select) is joined to.
type Slot struct {
	MC    int
	Label string
	// Socket is fault.Unknown unless the label names it (skx_edac and
	// i10nm_edac write "CPU_SrcID#<socket>_MC#<mc>_Chan#<ch>_DIMM#<n>").
	Socket int
	// Channel is the index of the "channel" layer of dimm_location, or of
	// the legacy csrow chN attribute; fault.Unknown when neither exists.
	Channel int
	// CSRow is the index of the "csrow" layer of dimm_location, or of the
	// legacy csrowN directory; fault.Unknown when neither exists. On
	// amd64_edac's UMC controllers it is the chip select an MCA record
	// names.
	CSRow int
}

var srcID = regexp.MustCompile(`SrcID#(\d+)_`)

// Slots lists the DIMMs of the controllers with their socket and channel.
func Slots(ctrls []Controller) []Slot {
	var out []Slot
	for _, c := range ctrls {
		for _, d := range c.DIMMs {
			s := Slot{MC: c.Index, Label: d.Label, Socket: socketOf(d.Label), Channel: fault.Unknown, CSRow: fault.Unknown}
			if layers, err := ParseLocation(d.Location); err == nil {
				for _, l := range layers {
					switch l.Name {
					case "channel":
						s.Channel = l.Index
					case "csrow":
						s.CSRow = l.Index
					}
				}
			}
			out = append(out, s)
		}
		if len(c.DIMMs) > 0 {
			continue
		}
		for _, r := range c.CSRows {
			for _, ch := range r.Channels {
				out = append(out, Slot{MC: c.Index, Label: ch.Label, Socket: socketOf(ch.Label), Channel: ch.Index, CSRow: r.Index})
			}
		}
	}
	return out
}

func socketOf(label string) int {
	m := srcID.FindStringSubmatch(label)
	if m == nil {
		return fault.Unknown
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return fault.Unknown
	}
	return n
}
