// Package replay answers "what would this policy have done on this
// history?". It feeds recorded or generated error reports to the same
// policy engine and budget checks the daemon runs (policy.Engine,
// Config.CheckPage, Config.CheckCPU), one engine per host and policy, with
// time taken from each record, and applies the resulting actions to a
// simulated machine per host so that budgets and never-act-twice behave as
// they do live. Built-in anchor policies mimic rasdaemon, mcelog, the
// kernel's CEC and illumos FMA on the same trace.
//
// It reports, per policy: pages and CPUs retired, memory retired as a share
// of RAM, DIMM replacement cases and their lead time before the first
// uncorrected error on that DIMM, and the share of pages with an
// uncorrected error that the policy had retired (or whose DIMM it had
// flagged) before the error, with the lead time.
//
// What is modelled and what is approximated (also in the README):
//   - The kernel's own memory-failure handling poisons a page with an
//     uncorrected error whatever the policy; the simulated machine does the
//     same before the policy sees the record, so those pages count against
//     the RAM budget as HardwareCorrupted does live.
//   - Actions always succeed (no EBUSY, no unmovable kernel pages) and the
//     policy's mode is ignored: replay shows what enforcement would do.
//   - There is no operator: cases are never repaired or acquitted, so a
//     tripped engine stays tripped for the rest of the trace.
//   - One CPU topology per host: CPU n's SMT siblings are n mod cores +
//     k*cores, no CPU lacks an online file, none is in isolcpus.
package replay
