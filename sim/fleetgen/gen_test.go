package fleetgen

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func small(seed uint64, hosts int) Params {
	p := Defaults()
	p.Seed, p.Hosts = seed, hosts
	return p
}

func gen(t testing.TB, p Params) ([]byte, Stats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Generate(&buf, p, nil)
	require.NoError(t, err)
	return buf.Bytes(), st
}

func TestDeterministicForASeed(t *testing.T) {
	a, sa := gen(t, small(7, 300))
	b, sb := gen(t, small(7, 300))
	require.Equal(t, sha256.Sum256(a), sha256.Sum256(b), "same seed, same bytes")
	require.Equal(t, sa, sb)
	c, _ := gen(t, small(8, 300))
	require.NotEqual(t, sha256.Sum256(a), sha256.Sum256(c), "another seed, another trace")

	// A host's history does not depend on the hosts after it: the first
	// 100 hosts of a 300-host trace are a 100-host trace.
	d, _ := gen(t, small(7, 100))
	require.True(t, bytes.HasPrefix(a, d))
}

// TestCalibration checks the aggregate shape the parameters were chosen
// for, on a 3000-host fleet year: a few percent of DIMMs log errors
// ([S09]: 8%/year on older DIMMs), errors are concentrated in few DIMMs
// (top 20% of erring DIMMs log > 80%; [S09] reports > 90%), the median
// erring DIMM logs far fewer errors than the mean, and UEs are rare.
func TestCalibration(t *testing.T) {
	p := small(1, 3000)
	_, st := gen(t, p)
	dimms := p.Hosts * p.DIMMsPerHost
	share := float64(len(st.ErrorsPerDIMM)) / float64(dimms)
	require.Greater(t, share, 0.01, "share of DIMMs with errors")
	require.Less(t, share, 0.15, "share of DIMMs with errors")

	hosts := float64(st.HostsWithErrors) / float64(p.Hosts)
	require.Greater(t, hosts, 0.2, "share of hosts with errors")
	require.Less(t, hosts, 0.5, "share of hosts with errors")

	counts := slices.Clone(st.ErrorsPerDIMM)
	slices.Sort(counts)
	slices.Reverse(counts)
	var total, top uint64
	for i, c := range counts {
		total += c
		if i < len(counts)/5 {
			top += c
		}
	}
	require.Greater(t, float64(top)/float64(total), 0.8, "top 20%% of erring DIMMs' share of errors")
	median := counts[len(counts)/2]
	mean := float64(total) / float64(len(counts))
	require.Greater(t, mean, 10*float64(median), "heavy tail: mean %.0f vs median %d", mean, median)

	uePerHost := float64(st.UEs) / float64(p.Hosts)
	require.Greater(t, uePerHost, 0.005, "UEs per host-year ([S09]: 1.3%% of machines)")
	require.Less(t, uePerHost, 0.04, "UEs per host-year ([S09]: 1.3%% of machines)")
	require.Greater(t, st.Faults["single-bit/permanent"], st.Faults["multi-rank/permanent"], "mode ordering from the FIT table")
}

func TestValidate(t *testing.T) {
	p := small(1, 0)
	p.CPUs = 3
	_, err := Generate(&bytes.Buffer{}, p, nil)
	require.ErrorContains(t, err, "hosts must be >= 1, got 0")
	require.ErrorContains(t, err, "cpus (3) must be a positive multiple of threads per core (2)")
}

func BenchmarkGenerate(b *testing.B) {
	p := small(1, 1000)
	var n uint64
	for i := 0; i < b.N; i++ {
		var buf bytes.Buffer
		st, err := Generate(&buf, p, nil)
		if err != nil {
			b.Fatal(err)
		}
		n += st.Records
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
