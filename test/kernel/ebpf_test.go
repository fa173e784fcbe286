package kernel

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ebpfStorm is how many corrected errors the eBPF scenario injects on one
// page: well past the probe's per-key limit (4 per 10 s in the guest
// helper), so most of them must be counted in the kernel, not sent.
const ebpfStorm = 200

// EBPFScenario loads the eBPF source in the guest beside a tracefs
// instance on the same tracepoints (guest ebpf-check): both must make
// identical events of a corrected memory, a corrected cache and an
// uncorrected memory error (on a held page, which the kernel then poisons:
// ras:memory_failure_event must arrive too), and a storm on one page must
// be delivered as exact totals.
func EBPFScenario() Scenario {
	return Scenario{
		Name:   "ebpf",
		Append: "ras=cec_disable",
		Script: holdStart("/tmp/hold-ebpf", 1) +
			fmt.Sprintf("guest ebpf-check %d $(printf 0x%%x $((ADDR0 + 0x40)))\n", ebpfStorm) + holdKill,
	}
}

// TestEBPF runs the eBPF source on every selected cell: one object, loaded
// through CO-RE on 6.1 and 6.12, AMD and Intel guest models.
func TestEBPF(t *testing.T) {
	forEachCell(t, false, func(t *testing.T, lab *Lab, cell Cell) {
		rs := runScenario(t, lab, cell, EBPFScenario(), RunOptions{Timeout: 5 * time.Minute})
		requireModulesLoaded(t, rs)
		r := only(t, rs, "ebpf-check")
		num := func(key string) float64 {
			t.Helper()
			v, ok := r.Number(key)
			require.True(t, ok, "ebpf-check reported no %s: %v", key, r.Data)
			return v
		}
		require.Equal(t, "mce/mce_record,ras/mc_event,ras/memory_failure_event,ras/extlog_mem_event,ras/aer_event",
			r.String("attached"), "every RAS tracepoint Debian's kernels have")
		require.Equal(t, 3.0, num("identical_events"), "corrected memory, corrected cache, uncorrected memory error: eBPF event equals the tracefs one")
		require.Positive(t, num("mf_seen"), "the kernel's handling of the uncorrected error fired ras:memory_failure_event through eBPF")
		require.Equal(t, num("mf_seen"), num("mf_sent"))
		t.Logf("%s: uncorrected error: memory_failure_event seen %v (hard offline: %v)", cell, r.Data["mf_seen"], r.Data["hard_offline_error"])

		seen := num("storm_seen")
		require.Positive(t, seen, "the probe saw the storm")
		require.Zero(t, num("storm_lost"), "no record neither sent nor counted")
		require.Equal(t, seen, num("storm_sent")+num("storm_aggregated"), "every record sent or counted")
		require.Positive(t, num("storm_aggregated"), "a storm past the per-key limit is counted in the kernel")
		require.Equal(t, seen, num("storm_ebpf_count"), "the events' counts add up to every record the probe saw")
		require.Less(t, num("storm_ebpf_events"), seen, "fewer events than records: userspace work follows keys, not errors")
		if num("tracefs_missed") == 0 {
			require.Equal(t, num("storm_tracefs_count"), num("storm_ebpf_count"), "eBPF and a lossless tracefs agree on the storm")
		}
		// A one-page ring nobody reads during the storm.
		fullSeen := num("full_seen")
		require.Positive(t, fullSeen)
		require.Zero(t, num("full_lost"), "full ring: nothing lost")
		require.Equal(t, fullSeen, num("full_sent")+num("full_aggregated"), "full ring: every record sent or counted")
		require.Equal(t, num("full_aggregated"), num("full_ringbuf_full"), "full ring: only a full ring made records counted (no rate limit)")
		require.Equal(t, fullSeen, num("full_ebpf_count"), "full ring: the events' counts add up to every record seen")
		if fullSeen > 4096/128 {
			require.Positive(t, num("full_ringbuf_full"), "more records than a page of ring holds (128 bytes each)")
		}
		t.Logf("%s: one-page ring, %d injected: seen %v, sent %v, counted on a full ring %v, %v events",
			cell, int(num("full_injected")), fullSeen, r.Data["full_sent"], r.Data["full_ringbuf_full"], r.Data["full_ebpf_events"])
		// A storm over several 1 s key windows (the daemon's defaults).
		longSeen, limit := num("long_seen"), num("long_key_limit")
		require.Positive(t, longSeen)
		require.Zero(t, num("long_lost"), "long storm: nothing lost")
		require.Equal(t, longSeen, num("long_sent")+num("long_aggregated"), "long storm: every record sent or counted")
		require.Equal(t, longSeen, num("long_ebpf_count"), "long storm: the events' counts add up to every record seen")
		// Sending the limit in every window would be that many times
		// the windows the storm spans; a storm that goes on sends only
		// in its first (a stall of over a window between records starts
		// it again: allow two).
		require.LessOrEqual(t, num("long_sent"), 3*limit, "long storm: past its first window a storm sends nothing")
		t.Logf("%s: long storm, %d injected in %v ms: seen %v, sent %v, counted %v, %v notices, %v events",
			cell, int(num("long_injected")), r.Data["long_inject_ms"], longSeen, r.Data["long_sent"], r.Data["long_aggregated"],
			r.Data["long_notices"], r.Data["long_ebpf_events"])
		t.Logf("%s: open %v ms, RSS %v -> %v kB, memory error injected in %v ms, via eBPF %v ms after, storm of %d: seen %v, sent %v, counted %v, ringbuf full %v, %v events; tracefs %v (missed %v); Close returned in %v ms",
			cell, r.Data["open_ms"], r.Data["rss_kb_before_open"], r.Data["rss_kb_after_open"], r.Data["memory_inject_ms"], r.Data["memory_ebpf_ms"], ebpfStorm,
			seen, r.Data["storm_sent"], r.Data["storm_aggregated"], r.Data["storm_ringbuf_full"], r.Data["storm_ebpf_events"],
			r.Data["storm_tracefs_count"], r.Data["tracefs_missed"], r.Data["close_ms"])
	})
}
