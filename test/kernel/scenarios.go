package kernel

// holdPrelude starts `guest hold N` in the background and waits for it to
// publish its pages: $ADDR0/$PFN0 (and $ADDR1/$PFN1 when N > 1).
const holdPrelude = `H=/tmp/hold
guest hold $HOLD_PAGES $H &
HOLD=$!
while [ ! -e $H/ready ]; do usleep 20000; done
ADDR0=$(cat $H/addr0); PFN0=$(cat $H/pfn0)
if [ -e $H/addr1 ]; then ADDR1=$(cat $H/addr1); PFN1=$(cat $H/pfn1); fi
`

// holdRelease lets the holder verify its pattern and waits for its result.
const holdRelease = `touch $H/release
wait $HOLD
`

// HarnessScenario proves the harness end to end without the daemon: two
// corrected memory errors on a held page reach mce_record, and a soft
// offline of that page (written by the guest helper) poisons the old frame
// while the holder's data survives.
func HarnessScenario() Scenario {
	return Scenario{
		Name:   "harness",
		Append: "ras=cec_disable",
		Script: "HOLD_PAGES=1\n" + holdPrelude + `
guest trace-start kt
guest -tag meminfo-before meminfo
for i in 1 2; do guest -tag inject inject-mem 1 $(printf 0x%x $((ADDR0 + 0x40))); done
guest trace-count kt 2 10s
guest -tag kpf-before kpf $PFN0
guest soft-offline $ADDR0
guest -tag kpf-after kpf $PFN0
guest -tag meminfo-after meminfo
` + holdRelease,
	}
}
