package kernel

import "fmt"

// LatencyPages is how many pages each latency run measures.
const LatencyPages = 12

// LatencyScenario measures, page after page, the time from the deciding
// corrected error (the second on the page) to HWPOISON in kpageflags. With
// the daemon it runs with ras=cec_disable, the built-in policy and debug
// logs timestamped by stamp-run (so the time can be broken down); without
// it, CEC (6.12, threshold 2 on the Intel model) does the offlining.
//
// The probe (a tight kpageflags poll) is started and watching before the
// deciding injection; a separate trace instance on the mono clock dates
// each mce_record on the same CLOCK_MONOTONIC as the probe and the log.
func LatencyScenario(withDaemon bool) Scenario {
	sc := Scenario{Name: "latency-cec"}
	daemon, stop := "", ""
	if withDaemon {
		sc.Name, sc.Append = "latency-daemon", "ras=cec_disable"
		daemon, stop = daemonStart("lat", "", "debug"), daemonStop
	}
	sc.Script = section(sc.Name) + holdStart("/tmp/hold-lat", LatencyPages) + daemon + fmt.Sprintf(`
guest trace-start lat clock=mono
i=0
while [ $i -lt %[1]d ]; do
  A=$(printf 0x%%x $(( $(cat $H/addr$i) + 0x40 ))); P=$(cat $H/pfn$i)
  guest -tag first inject-mem 1 $A
  usleep 300000
  rm -f /tmp/probe-ready
  guest -tag probe wait-poisoned $P 10s 0 /tmp/probe-ready &
  POLL=$!
  while [ ! -e /tmp/probe-ready ]; do usleep 2000; done
  guest -tag deciding inject-mem 1 $A
  wait $POLL
  usleep 200000
  i=$((i+1))
done
guest -tag trace trace-count lat %[2]d 10s
`, LatencyPages, 2*LatencyPages) + stop + holdRelease
	return sc
}
