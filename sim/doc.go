// Package sim is a fault-injection simulator: a fake machine whose sysfs,
// procfs, tracefs and debugfs tree the real daemon reads unchanged, laid out
// as kpath.Under(dir).
//
// The simulator writes the bytes the kernel would write, on its own: record
// payloads are laid out from the real format files of each kernel (embedded
// from Debian 6.1 and 6.12 captures) and wrapped in ring-buffer pages exactly
// as the captured trace_pipe_raw pages are. It never imports the daemon's
// decoders, so every test that runs the daemon against it cross-checks them.
//
// What plain files cannot do, a running Machine (Serve) does: it populates a
// tracefs instance when one is created with mkdir, consumes writes to
// soft_offline_page / hard_offline_page (FIFOs) and turns them into
// HWPOISON bits in /proc/kpageflags and HardwareCorrupted in /proc/meminfo,
// and keeps cpu/online and cpu/offline in step with the cpuN/online files.
//
// Limits the daemon's wiring must know about:
//   - A "failed" page offline cannot return an errno through a FIFO: the page
//     is simply never poisoned. Errno injection (EBUSY, EIO, EHWPOISON ...)
//     belongs in the actuator packages' own tests through kpath.FS.
//   - Removing a populated instance directory needs os.RemoveAll (the fake
//     instance holds files; real tracefs accepts rmdir, and RemoveAll works on
//     both).
//   - Only the binary per-CPU interface (per_cpu/cpuN/trace_pipe_raw) carries
//     records; there is no text trace_pipe.
//   - Writes to the offline FIFOs are split into requests at newlines; a
//     write without a trailing newline is taken whole when the simulator
//     reads it, so writers should end each address with "\n" as echo does.
//
// # Control protocol
//
// Serve listens on DIR/.sim/ctl.sock (a Unix stream socket). Each request is
// one JSON object on one line; each gets exactly one JSON line back:
//
//	-> {"op":"memory-ce","addr":45694016,"count":2,"cpu":1}
//	<- {"ok":true}
//	-> {"op":"offlined"}
//	<- {"ok":true,"offlined":[{"kind":"soft","addr":45694976,"pfn":11156,"poisoned":true}]}
//	-> {"op":"bogus"}
//	<- {"ok":false,"error":"unknown op \"bogus\""}
//
// Ops and the request fields they use:
//
//	mce               mce: {cpu,bank,status,addr,misc,synd,ipid,mcgstatus,count}
//	memory-ce         addr, count, cpu
//	memory-ue         addr, cpu
//	cache-ce          cpu, count
//	edac-ce           mc, dimm, ce
//	storm             count (n), pages
//	fail-next-offline count
//	refuse-offline    pfn
//	offlined          (none)  -> "offlined": [OfflineRequest...]
//	stats             (none)  -> "stats": Stats
//
// Numbers are JSON numbers (uint64 fits: encoding/json decodes into uint64
// without loss).
package sim
