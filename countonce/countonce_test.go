package countonce

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/fault"
)

var t0 = time.Unix(1_700_000_000, 0)

type rec struct {
	after time.Duration // since t0
	src   fault.Source
	addr  uint64 // 0: no usable address
	label string
	mc    int
	count uint32
	// MCA location
	vendor  fault.Vendor
	socket  int
	bank    int
	channel int
	cs      *int // the AMD UMC chip select, nil when the record names none
	class   fault.Class
	sev     fault.Severity
	located string // Event.LocatedBy
}

func (r rec) event() fault.Event {
	ev := fault.NewEvent(r.src, t0.Add(r.after))
	ev.Class = fault.ClassMemory
	if r.class != 0 {
		ev.Class = r.class
	}
	ev.Severity = r.sev
	ev.Count = max(r.count, 1)
	if r.addr != 0 {
		ev.PhysAddr, ev.AddrValid, ev.AddrLSB = r.addr, true, 12
	}
	ev.DIMMLabel, ev.LocatedBy = r.label, r.located
	if r.label != "" || r.src == fault.SourceEDACPoll || r.src == fault.SourceTraceMC {
		ev.MC = r.mc
	}
	ev.Vendor = r.vendor
	if r.vendor != fault.VendorUnknown {
		ev.Socket, ev.Bank, ev.Channel = r.socket, r.bank, r.channel
	}
	if r.cs != nil {
		ev.ChipSelect = *r.cs
	}
	return ev
}

// short renders verdicts as "count:facets:dimm" for compact expectations.
func short(vs []Verdict) string {
	var parts []string
	for _, v := range vs {
		s := v.New.String() + "x" + string(rune('0'+v.Event.Count))
		if v.Event.DIMMLabel != "" {
			s += "@" + v.Event.DIMMLabel
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestObserve(t *testing.T) {
	const page = 0x2d94040
	mce := func(after time.Duration) rec { return rec{after: after, src: fault.SourceTraceMCE, addr: page} }
	mc := func(after time.Duration, n uint32) rec {
		return rec{after: after, src: fault.SourceTraceMC, addr: page &^ 0xfff, label: "DIMM_A1", count: n}
	}
	intel := func(after time.Duration, bank, ch int) rec {
		return rec{after: after, src: fault.SourceTraceMCE, addr: page, vendor: fault.VendorIntel, socket: 0, bank: bank, channel: ch}
	}
	smca := func(after time.Duration, ch int) rec {
		return rec{after: after, src: fault.SourceTraceMCE, vendor: fault.VendorAMD, socket: 0, bank: 15, channel: ch}
	}
	smcaCS := func(after time.Duration, ch, cs int) rec {
		r := smca(after, ch)
		r.cs = &cs
		return r
	}
	// amd64_edac's UMC layout, one entry per rank: channel 0 holds a
	// dual-rank DIMM whose ranks have the driver's own labels, channel 1
	// two DIMMs labelled by the administrator, both ranks of each alike.
	ranks := []Slot{
		{MC: 0, Label: "mc#0csrow#0channel#0", Socket: fault.Unknown, Channel: 0, CSRow: 0},
		{MC: 0, Label: "mc#0csrow#1channel#0", Socket: fault.Unknown, Channel: 0, CSRow: 1},
		{MC: 0, Label: "P0_B1", Socket: fault.Unknown, Channel: 1, CSRow: 0},
		{MC: 0, Label: "P0_B1", Socket: fault.Unknown, Channel: 1, CSRow: 1},
		{MC: 0, Label: "P0_B2", Socket: fault.Unknown, Channel: 1, CSRow: 2},
		{MC: 0, Label: "P0_B2", Socket: fault.Unknown, Channel: 1, CSRow: 3},
	}
	// amd64_edac's record of a Zen UMC error without MCA_SYND: logged at
	// csrow 0 of the node, its label that entry's (channel 0 on 6.12).
	unplaced := func(after time.Duration, mc int, label string) rec {
		return rec{after: after, src: fault.SourceTraceMC, mc: mc, label: label, located: fault.LocatedByUnplaced}
	}
	smcaOn := func(after time.Duration, socket, ch int) rec {
		r := smca(after, ch)
		r.socket = socket
		return r
	}
	poll := func(after time.Duration, label string, n uint32) rec {
		return rec{after: after, src: fault.SourceEDACPoll, label: label, count: n}
	}
	layout := []Slot{
		{MC: 0, Label: "DIMM_A1", Socket: fault.Unknown, Channel: 0},
		{MC: 0, Label: "DIMM_A2", Socket: fault.Unknown, Channel: 1},
	}
	tests := []struct {
		name   string
		layout []Slot
		recs   []rec
		flush  time.Duration
		want   []string // per record, then the final flush
	}{
		{
			name: "mce_record first, mc_event adds the label",
			recs: []rec{mce(0), mc(time.Millisecond, 1)},
			want: []string{"error+pagex1", "dimmx1@DIMM_A1"},
		},
		{
			name: "mc_event first, mce_record adds nothing",
			recs: []rec{mc(0, 1), mce(time.Millisecond)},
			want: []string{"error+page+dimmx1@DIMM_A1", ""},
		},
		{
			name: "CEC: mce_records with no partner all count",
			recs: []rec{mce(0), mce(time.Second), mce(2 * time.Second)},
			want: []string{"error+pagex1", "error+pagex1", "error+pagex1"},
		},
		{
			name: "one mc_event of count 3 covers 2 mce_records and 1 more error",
			recs: []rec{mce(0), mce(time.Millisecond), mc(2*time.Millisecond, 3)},
			want: []string{"error+pagex1", "error+pagex1", "dimmx2@DIMM_A1 error+page+dimmx1@DIMM_A1"},
		},
		{
			name: "a partner after the window is a new error",
			recs: []rec{mce(0), mc(6*time.Second, 1)},
			want: []string{"error+pagex1", "error+page+dimmx1@DIMM_A1"},
		},
		{
			name:  "counter delta credited by the mc_event that came before it",
			recs:  []rec{mc(0, 2), poll(time.Second, "DIMM_A1", 3)},
			flush: 10 * time.Second,
			want:  []string{"error+page+dimmx2@DIMM_A1", "", "error+dimmx1@DIMM_A1"},
		},
		{
			name:  "counter delta read before the mc_event is held, then credited",
			recs:  []rec{poll(0, "DIMM_A1", 1), mc(time.Second, 1)},
			flush: 10 * time.Second,
			want:  []string{"", "error+page+dimmx1@DIMM_A1", ""},
		},
		{
			name:  "no-info counter takes credits of ambiguous labels",
			recs:  []rec{{src: fault.SourceTraceMC, addr: 0x1000, label: "DIMM_A1 or DIMM_A2"}, poll(time.Second, "", 1)},
			flush: 10 * time.Second,
			want:  []string{"error+page+dimmx1@DIMM_A1 or DIMM_A2", "", ""},
		},
		{
			name:  "a credit for another DIMM does not hide this DIMM's errors",
			recs:  []rec{{src: fault.SourceTraceMC, addr: 0x1000, label: "DIMM_A2"}, poll(time.Second, "DIMM_A1", 1)},
			flush: 10 * time.Second,
			want:  []string{"error+page+dimmx1@DIMM_A2", "", "error+dimmx1@DIMM_A1"},
		},
		{
			name:  "a corrected credit never covers an uncorrected delta",
			recs:  []rec{mc(0, 1), {after: time.Second, src: fault.SourceEDACPoll, label: "DIMM_A1", sev: fault.SeverityUncorrectedRecoverable}},
			flush: 10 * time.Second,
			want:  []string{"error+page+dimmx1@DIMM_A1", "", "error+dimmx1@DIMM_A1"},
		},
		{
			name:  "an unlabelled mc_event covers a DIMM without a label",
			recs:  []rec{{src: fault.SourceTraceMC, addr: 0x1000, mc: 0, label: ""}, poll(time.Second, "mc0/rank2", 1)},
			flush: 10 * time.Second,
			want:  []string{"error+pagex1", "", ""},
		},
		{
			name: "no EDAC: the Intel MCA location keys the DIMM rule",
			recs: []rec{intel(0, 7, 1)},
			want: []string{"error+page+dimmx1@socket 0 bank 7 channel 1"},
		},
		{
			name:   "EDAC bound, AMD SMCA location joins the layout; mc_event adds the page",
			layout: layout,
			recs:   []rec{smca(0, 1), {after: time.Millisecond, src: fault.SourceTraceMC, addr: 0x5000, label: "DIMM_A2"}},
			want:   []string{"error+dimmx1@DIMM_A2", "pagex1@DIMM_A2"},
		},
		{
			name:   "EDAC bound, AMD: the chip select picks the rank",
			layout: ranks,
			recs:   []rec{smcaCS(0, 0, 1), smcaCS(time.Second, 1, 2), smcaCS(2*time.Second, 1, 1)},
			want:   []string{"error+dimmx1@mc#0csrow#1channel#0", "error+dimmx1@P0_B2", "error+dimmx1@P0_B1"},
		},
		{
			name:   "EDAC bound, AMD without a chip select: ranks labelled apart do not join",
			layout: ranks,
			recs:   []rec{smca(0, 0)},
			want:   []string{"errorx1"},
		},
		{
			name:   "EDAC bound, AMD without a chip select: ranks labelled alike are one DIMM",
			layout: ranks[2:4],
			recs:   []rec{smca(0, 1)},
			want:   []string{"error+dimmx1@P0_B1"},
		},
		{
			name:   "Zen UMC without MCA_SYND, ranks labelled apart: the placeholder mc_event pairs by node, no DIMM counts",
			layout: ranks,
			recs:   []rec{smca(0, 0), unplaced(time.Millisecond, 0, "mc#0csrow#0channel#0"), poll(time.Second, "mc#0csrow#0channel#0", 1)},
			flush:  10 * time.Second,
			want:   []string{"errorx1", "", "", ""},
		},
		{
			name:   "Zen UMC without MCA_SYND: the placeholder mc_event first, the mce_record adds nothing",
			layout: ranks,
			recs:   []rec{unplaced(0, 0, "mc#0csrow#0channel#0"), smca(time.Millisecond, 0)},
			want:   []string{"errorx1", ""},
		},
		{
			name:   "Zen UMC without MCA_SYND, ranks labelled alike: the join names the DIMM, the placeholder's label does not",
			layout: ranks[2:4],
			recs: []rec{
				smca(0, 1), unplaced(time.Millisecond, 0, "P0_B1"), // 6.1: csrow 0 of the record's channel
				unplaced(time.Minute, 0, "mc#0csrow#0channel#0"), smca(time.Minute+time.Millisecond, 1), // 6.12: channel 0
			},
			want: []string{"error+dimmx1@P0_B1", "", "errorx1", "dimmx1@P0_B1"},
		},
		{
			name:   "Zen UMC without MCA_SYND: two errors on one node pair either way, one on another node does not",
			layout: ranks,
			recs: []rec{
				smca(0, 0), smcaOn(time.Millisecond, 1, 0), smca(2*time.Millisecond, 0),
				unplaced(3*time.Millisecond, 0, "mc#0csrow#0channel#0"), unplaced(4*time.Millisecond, 0, "mc#0csrow#0channel#0"),
				unplaced(5*time.Millisecond, 2, "mc#2csrow#0channel#0"),
			},
			want: []string{"errorx1", "errorx1", "errorx1", "", "", "errorx1"},
		},
		{
			name: "no EDAC: the AMD chip select keys the channel's DIMM slot, both ranks alike",
			recs: []rec{smcaCS(0, 2, 2), smcaCS(time.Second, 2, 3), smcaCS(2*time.Second, 2, 1), smca(3*time.Second, 2)},
			want: []string{"error+dimmx1@socket 0 UMC 2 slot 1", "error+dimmx1@socket 0 UMC 2 slot 1", "error+dimmx1@socket 0 UMC 2 slot 0", "error+dimmx1@socket 0 UMC 2"},
		},
		{
			name:   "EDAC bound, Intel location ambiguous in the layout: learned from a pair",
			layout: []Slot{{MC: 0, Label: "X0", Socket: 0, Channel: 1}, {MC: 1, Label: "X1", Socket: 0, Channel: 1}},
			recs: []rec{
				intel(0, 8, 1),
				{after: time.Millisecond, src: fault.SourceTraceMC, mc: 1, addr: page &^ 0xfff, label: "X1"},
				intel(time.Minute, 8, 1),
			},
			want: []string{"error+pagex1", "dimmx1@X1", "error+page+dimmx1@X1"},
		},
		{
			name:   "a learned join names the open errors of that location too",
			layout: []Slot{{MC: 0, Label: "X0", Socket: 0, Channel: 1}, {MC: 1, Label: "X1", Socket: 0, Channel: 1}},
			recs: []rec{
				intel(0, 8, 1),
				{after: time.Millisecond, src: fault.SourceTraceMCE, addr: 0x7000040, vendor: fault.VendorIntel, socket: 0, bank: 8, channel: 1},
				{after: 2 * time.Millisecond, src: fault.SourceTraceMC, mc: 1, addr: 0x7000000, label: "X1"},
			},
			want: []string{"error+pagex1", "error+pagex1", "dimmx1@X1 dimmx1@X1"},
		},
		{
			name: "corrected and uncorrected never merge",
			recs: []rec{mce(0), {after: time.Millisecond, src: fault.SourceTraceMC, addr: page &^ 0xfff, label: "DIMM_A1", sev: fault.SeverityUncorrectedRecoverable}},
			want: []string{"error+pagex1", "error+page+dimmx1@DIMM_A1"},
		},
		{
			name: "cache errors pass with every facet",
			recs: []rec{{src: fault.SourceTraceMCE, class: fault.ClassCache}},
			want: []string{"error+page+dimm+rowx1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			s.SetLayout(tc.layout)
			var got []string
			for _, r := range tc.recs {
				got = append(got, short(s.Observe(r.event())))
			}
			if tc.flush > 0 {
				got = append(got, short(s.Flush(t0.Add(tc.flush))))
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestLearnedJoinClashes(t *testing.T) {
	s := New(Options{})
	s.SetLayout([]Slot{})
	loc := rec{src: fault.SourceTraceMCE, vendor: fault.VendorIntel, socket: 0, bank: 7, channel: 0}
	for i, label := range []string{"X0", "X1"} {
		r := loc
		r.after, r.addr = time.Duration(i)*time.Minute, uint64(0x1000*(i+1))
		s.Observe(r.event())
		s.Observe(rec{after: r.after + time.Millisecond, src: fault.SourceTraceMC, addr: r.addr, label: label}.event())
	}
	// One bank channel seen with two labels serves several DIMMs: no join.
	loc.after, loc.addr = time.Hour, 0x9000
	vs := s.Observe(loc.event())
	require.Len(t, vs, 1)
	require.Empty(t, vs[0].Event.DIMMLabel)
	require.Zero(t, s.Stats().Learned)
}

func TestDescribe(t *testing.T) {
	s := New(Options{})
	paths := s.Describe(Machine{EDAC: true, CEC: true, CECThreshold: "1023"})
	require.Equal(t, "memory corrected", paths[0].Class)
	require.Contains(t, paths[0].From, "mce_record, first")
	require.Contains(t, paths[0].Why, "action_threshold 1023")
	paths = s.Describe(Machine{})
	require.Equal(t, "mce_record", paths[0].From)
	require.Equal(t, "none", paths[2].From)
}

// BenchmarkStorm: a CE storm on 4 pages through mce_record only (CEC on,
// or no EDAC). The cost per record must not grow with the storm's size.
func BenchmarkStorm(b *testing.B) {
	s := New(Options{})
	ev := fault.NewEvent(fault.SourceTraceMCE, t0)
	ev.Class, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, true, 12
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev.Received = t0.Add(time.Duration(i) * 10 * time.Microsecond)
		ev.PhysAddr = uint64(0x100+i%4) << 12
		if len(s.Observe(ev)) != 1 {
			b.Fatal("a storm error was not counted")
		}
	}
}

// Open errors are bounded: a storm over more pages than MaxOpen closes the
// oldest early instead of growing without end, and still counts each
// record once.
func TestMaxOpen(t *testing.T) {
	s := New(Options{MaxOpen: 100})
	for i := range 1000 {
		ev := rec{after: time.Duration(i) * time.Microsecond, src: fault.SourceTraceMCE, addr: uint64(0x1000+i) << 12}.event()
		vs := s.Observe(ev)
		require.Len(t, vs, 1)
		require.Equal(t, FacetError|FacetPage, vs[0].New)
	}
	require.LessOrEqual(t, len(s.queue), 101)
	require.LessOrEqual(t, len(s.byPFN), 101)
	require.Equal(t, uint64(1000), s.Stats().First["mce_record"])
}

// BenchmarkStormLocated is BenchmarkStorm with what an Intel record
// carries (socket, bank, channel) and an EDAC layout to join: the location
// is named and joined at every record.
func BenchmarkStormLocated(b *testing.B) {
	s := New(Options{})
	s.SetLayout([]Slot{{MC: 0, Label: "DIMM_A1", Socket: 0, Channel: 1}, {MC: 1, Label: "DIMM_B1", Socket: 0, Channel: 1}})
	ev := fault.NewEvent(fault.SourceTraceMCE, t0)
	ev.Class, ev.AddrValid, ev.AddrLSB = fault.ClassMemory, true, 12
	ev.Vendor, ev.Socket, ev.Bank, ev.Channel = fault.VendorIntel, 0, 7, 1
	var out []Verdict
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev.Received = t0.Add(time.Duration(i) * 10 * time.Microsecond)
		ev.PhysAddr = uint64(0x100+i%4) << 12
		if out = s.AppendObserve(out[:0], ev); len(out) != 1 {
			b.Fatal("a storm error was not counted")
		}
	}
}
