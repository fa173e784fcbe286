package countonce

import (
	"fmt"
	"slices"
	"strings"

	"github.com/selfprotect/selfprotect/fault"
)

// Slot is one DIMM as the EDAC driver lays it out in sysfs: what an MCA
// location is joined to.
type Slot struct {
	MC    int
	Label string
	// Socket is the package the DIMM hangs off when the layout says so
	// (skx/i10nm labels carry "SrcID#N"), fault.Unknown otherwise.
	Socket int
	// Channel is the DIMM's "channel" layer index, fault.Unknown if none.
	Channel int
	// CSRow is its "csrow" layer index, fault.Unknown if none: on
	// amd64_edac's UMC controllers, the chip select of the rank.
	CSRow int
}

// SetLayout tells the stage which DIMMs the EDAC driver knows. nil means
// no EDAC driver is bound: an MCA location then keys the DIMM rule itself,
// until an EDAC or firmware record (eMCA's FRU text) brings a label. With
// labels about, DIMMs are keyed by labels only (joined or learned), so the
// rule does not count one DIMM under two names.
func (s *Stage) SetLayout(slots []Slot) {
	s.layout = append([]Slot(nil), slots...)
	s.edac = slots != nil
}

// locParts are what locKey reads of a record.
type locParts struct {
	vendor                      fault.Vendor
	socket, bank, channel, csel int
}

// maxLocNames bounds the cache of location names: a machine has a few
// dozen locations, garbage records could make up any number.
const maxLocNames = 1024

// locName is locKey through a cache: its text costs a Sprintf, and every
// MCA memory record asks for it.
func (s *Stage) locName(ev *fault.Event) string {
	p := locParts{ev.Vendor, ev.Socket, ev.Bank, ev.Channel, ev.ChipSelect}
	if name, ok := s.locNames[p]; ok {
		return name
	}
	name := locKey(ev)
	if s.locNames == nil {
		s.locNames = map[locParts]string{}
	}
	if len(s.locNames) < maxLocNames {
		s.locNames[p] = name
	}
	return name
}

// locKey names the memory location an MCA record gives by itself, "" when
// it gives none finer than the socket. An AMD record's chip select is part
// of it: amd64_edac labels ranks (csrow = chip select), so a location is
// joined to a label, or learns one, rank by rank.
func locKey(ev *fault.Event) string {
	if ev.Channel == fault.Unknown || ev.Socket == fault.Unknown {
		return ""
	}
	if ev.Vendor == fault.VendorAMD {
		if ev.ChipSelect != fault.Unknown {
			return fmt.Sprintf("socket %d UMC %d chip select %d", ev.Socket, ev.Channel, ev.ChipSelect)
		}
		return fmt.Sprintf("socket %d UMC %d", ev.Socket, ev.Channel)
	}
	return fmt.Sprintf("socket %d bank %d channel %d", ev.Socket, ev.Bank, ev.Channel)
}

// mcaDIMM names the DIMM an MCA location points at when nothing labels it:
// on AMD the channel's slot its chip select belongs to (chip selects 2n and
// 2n+1 are DIMM n, as amd64_edac pairs them), so that both ranks of one
// DIMM count as that DIMM and the two DIMMs of a channel apart.
func mcaDIMM(ev *fault.Event, loc string) string {
	if ev.Vendor == fault.VendorAMD && ev.ChipSelect != fault.Unknown {
		return fmt.Sprintf("socket %d UMC %d slot %d", ev.Socket, ev.Channel, ev.ChipSelect/2)
	}
	return loc
}

// locate gives an MCA record without a DIMM the finest one it can: the
// EDAC label its location joins to, else (no EDAC driver) the location
// itself. It returns the location key, "" if none.
func (s *Stage) locate(ev *fault.Event) string {
	loc := s.locName(ev)
	if loc == "" || ev.DIMMLabel != "" || viewOf(ev.Source) != viewMCE {
		return loc
	}
	if d, ok := s.join(ev); ok {
		ev.MC, ev.DIMMLabel, ev.LocatedBy = d.mc, d.label, fault.LocatedByLayout
		s.joined.Add(1)
		return loc
	}
	if d, ok := s.learned[loc]; ok {
		ev.MC, ev.DIMMLabel, ev.LocatedBy = d.mc, d.label, fault.LocatedByLearned
		s.joined.Add(1)
		return loc
	}
	if !s.edac && !s.labelled {
		ev.MC, ev.DIMMLabel, ev.LocatedBy = fault.Unknown, mcaDIMM(ev, loc), fault.LocatedByMCA
	}
	return loc
}

// join finds the one DIMM of the layout on the record's socket and
// channel, and on AMD its chip select, when the record names one and the
// layout has csrows (amd64_edac's UMC layout is "csrow <chip select>
// channel <UMC>", one entry per rank: by channel alone, a channel with a
// dual-rank DIMM would never join). Ranks labelled alike are one DIMM. On
// AMD the EDAC controller is the node, which is the socket on the parts
// the simulator and the lab model; a layout that names sockets is used as
// written.
func (s *Stage) join(ev *fault.Event) (dimmRef, bool) {
	var buf [4]dimmRef
	found := buf[:0]
	for _, sl := range s.layout {
		if sl.Channel != ev.Channel || sl.Label == "" {
			continue
		}
		switch {
		case sl.Socket != fault.Unknown && sl.Socket != ev.Socket:
			continue
		case sl.Socket == fault.Unknown && (ev.Vendor != fault.VendorAMD || sl.MC != ev.Socket):
			continue
		case ev.ChipSelect != fault.Unknown && sl.CSRow != fault.Unknown && sl.CSRow != ev.ChipSelect:
			continue
		}
		if d := (dimmRef{sl.MC, sl.Label}); !slices.Contains(found, d) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return dimmRef{}, false
	}
	return found[0], true
}

// learn joins a location to a label when one error arrives both ways: an
// MCA record with the location and an EDAC record with the label. A
// location seen with two labels is ambiguous (one MCA bank serves several
// DIMMs) and is never joined again.
func (s *Stage) learn(out []Verdict, g *group, ev *fault.Event, v view, loc string) []Verdict {
	var l string
	var d dimmRef
	switch {
	case v != viewMCE && g.loc != "" && ev.DIMMLabel != "":
		l, d = g.loc, dimmRef{ev.MC, ev.DIMMLabel}
	case v == viewMCE && loc != "" && g.native:
		l, d = loc, g.dimm
	default:
		return out
	}
	if s.clashed[l] || strings.Contains(d.label, " or ") {
		return out
	}
	if old, ok := s.learned[l]; ok {
		if old != d {
			delete(s.learned, l)
			s.clashed[l] = true
			s.nLearned.Add(-1)
		}
		return out
	}
	s.learned[l] = d
	s.nLearned.Add(1)
	return s.backfill(out, g, ev, l, d)
}

// backfill gives the DIMM just learned for location l to the open errors
// that came from l without one (CEC let no mc_event through for them): the
// DIMM rule counts them now, once, instead of never.
func (s *Stage) backfill(out []Verdict, except *group, ev *fault.Event, l string, d dimmRef) []Verdict {
	sev := severe(ev)
	for _, g := range s.queue {
		if g == except || g.gone || g.loc != l || g.hasDIMM || g.severe != sev || g.n == 0 {
			continue
		}
		g.hasDIMM, g.dimm, g.native = true, d, false
		g.facets |= FacetDIMM
		s.byDIMM[d] = append(s.byDIMM[d], g)
		e := *ev
		e.Source = fault.SourceTraceMCE
		e.Count = g.n
		e.MC, e.DIMMLabel, e.LocatedBy, e.Row = d.mc, d.label, fault.LocatedByLearned, ""
		e.AddrValid = g.hasPFN
		e.PhysAddr, e.AddrLSB = g.pfn*fault.PageSize, 12
		if !g.hasPFN {
			e.PhysAddr, e.AddrLSB = 0, 0
		}
		out = append(out, Verdict{Event: e, New: FacetDIMM})
	}
	return out
}
