package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/selfprotect/selfprotect/countonce"
	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/kpath"
	"github.com/selfprotect/selfprotect/mce"
	"github.com/selfprotect/selfprotect/store"
	"github.com/selfprotect/selfprotect/tracefs"
)

func loadFormats(t testing.TB, kernel string) *tracefs.Formats {
	t.Helper()
	var fs []*tracefs.Format
	for _, ev := range []string{"mce/mce_record", "ras/mc_event"} {
		p := filepath.Join("..", "tracefs", "testdata", kernel, "events", ev, "format")
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		f, err := tracefs.ParseFormat(p, filepath.Dir(ev), data)
		require.NoError(t, err)
		fs = append(fs, f)
	}
	return tracefs.NewFormats(fs...)
}

func quietDaemon(t testing.TB) *Daemon {
	t.Helper()
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.ErrorLevel)
	d, err := New(Options{Paths: kpath.Under(t.TempDir()), Log: log})
	require.NoError(t, err)
	// Alert-only cases (a storm) are stored at once.
	d.store, err = store.Open(filepath.Join(t.TempDir(), "test.db"))
	require.NoError(t, err)
	t.Cleanup(func() { d.store.Close() })
	// Cases are saved with their alerts, through the alerter.
	d.alerts.start(context.Background(), d.store)
	t.Cleanup(d.alerts.close)
	return d
}

// The real captured page (3 corrected DRAM errors, 6.12, Intel model) goes
// through the same steps the daemon runs per record: page parse, decode,
// count-once, engine. Two errors on page 0x29f9... trip exactly one case.
func TestObserveCapturedPage(t *testing.T) {
	d := quietDaemon(t)
	page, err := os.ReadFile("../tracefs/testdata/pages/6.12-intel/cpu1.bin")
	require.NoError(t, err)
	res, err := tracefs.ParsePage(page, 1, loadFormats(t, "6.12"))
	require.NoError(t, err)
	require.Len(t, res.Records, 3)
	storeQ := make(chan fault.Event, 16)
	for i := range res.Records {
		evs, err := mce.TraceDecoder(&res.Records[i], time.Now())
		require.NoError(t, err)
		for _, ev := range evs {
			d.observe(ev, storeQ)
		}
	}
	require.Equal(t, uint64(3), d.counters.counted.Load())
	require.Len(t, storeQ, 3)
	require.Equal(t, 1, d.jobs.len(), "the page rule trips once")
	j, _ := d.jobs.pop()
	require.Equal(t, fault.DiagSoftOfflinePage, j.c.Diagnosis)
}

// With an EDAC driver bound each error counts once whichever path reports
// it first: the mc_event of an error mce_record already counted adds its
// DIMM label, and its extra count (error_count 3 for 1 mce_record) counts.
func TestCountOnceWhenEDACBound(t *testing.T) {
	d := quietDaemon(t)
	d.stage.SetLayout([]countonce.Slot{{MC: 0, Label: "DIMM_A1", Socket: fault.Unknown, Channel: 0}})
	storeQ := make(chan fault.Event, 16)
	now := time.Now()

	mem := fault.NewEvent(fault.SourceTraceMCE, now)
	mem.Class, mem.PhysAddr, mem.AddrValid, mem.AddrLSB = fault.ClassMemory, 0x2d94040, true, 12
	d.observe(mem, storeQ)
	cache := fault.NewEvent(fault.SourceTraceMCE, now)
	cache.Class = fault.ClassCache
	d.observe(cache, storeQ)
	mc := fault.NewEvent(fault.SourceTraceMC, now.Add(time.Millisecond))
	mc.Class, mc.MC, mc.DIMMLabel, mc.Count = fault.ClassMemory, 0, "DIMM_A1", 3
	mc.PhysAddr, mc.AddrValid, mc.AddrLSB = 0x2d94000, true, 12
	d.observe(mc, storeQ)

	st := d.Status()
	require.Equal(t, uint64(1), st.Events.Merged, "the mc_event copy of the mce_record's error")
	require.Equal(t, uint64(4), st.Events.Errors, "1 + 1 cache + 2 more in the mc_event")
	require.Equal(t, uint64(1), st.Events.FirstBy["mce_record"])
	require.Equal(t, uint64(2), st.Events.FirstBy["mc_event"])
	require.Len(t, storeQ, 3, "the history keeps every record")
	// 3 errors on the page: its rule tripped on the mc_event's new errors.
	require.Equal(t, 1, d.jobs.len())
}

// The reproduction: AMD model, 6.12, EDAC bound and CEC on. CEC
// swallows the errors, so no mc_event comes: the two mce_records alone
// must trip the page rule.
func TestCECAndEDACNotBlind(t *testing.T) {
	d := quietDaemon(t)
	d.stage.SetLayout([]countonce.Slot{{MC: 0, Label: "DIMM_A1", Socket: fault.Unknown, Channel: 0}})
	d.cec = countonce.Machine{CEC: true, CECThreshold: "1023"}
	d.edacBound = true
	storeQ := make(chan fault.Event, 16)
	for i := range 2 {
		mem := fault.NewEvent(fault.SourceTraceMCE, time.Now().Add(time.Duration(i)*time.Second))
		mem.Class, mem.Vendor, mem.PhysAddr, mem.AddrValid, mem.AddrLSB = fault.ClassMemory, fault.VendorAMD, 0x2d94040, true, 12
		d.observe(mem, storeQ)
	}
	require.Equal(t, 1, d.jobs.len())
	j, _ := d.jobs.pop()
	require.Equal(t, fault.DiagSoftOfflinePage, j.c.Diagnosis)
	st := d.Status()
	require.Equal(t, "mce_record, first; mc_event adds the DIMM label", st.CountPaths[0].From)
	require.Contains(t, st.CountPaths[0].Why, "CEC (action_threshold 1023)")
}

// BenchmarkPipeline measures the daemon's per-record work from a raw
// ring-buffer page to the engine (no I/O): the end-to-end target of
// design.md §7 is 200 k events/s from tracefs records.
func BenchmarkPipeline(b *testing.B) {
	for _, kernel := range []string{"6.1", "6.12"} {
		b.Run(kernel, func(b *testing.B) {
			d := quietDaemon(b)
			page, err := os.ReadFile("../tracefs/testdata/pages/" + kernel + "-intel/cpu2.bin") // 5 cache errors
			require.NoError(b, err)
			formats := loadFormats(b, kernel)
			storeQ := make(chan fault.Event, 1)
			events := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := tracefs.ParsePage(page, 2, formats)
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				for r := range res.Records {
					evs, err := mce.TraceDecoder(&res.Records[r], now)
					if err != nil {
						b.Fatal(err)
					}
					for _, ev := range evs {
						ev.CPU = i % 64 // spread over CPUs so the engine keeps counting
						d.observe(ev, storeQ)
						select {
						case <-storeQ:
						default:
						}
						for _, ok := d.jobs.pop(); ok; _, ok = d.jobs.pop() {
						}
						events++
					}
				}
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
