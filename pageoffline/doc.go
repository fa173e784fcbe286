// Package pageoffline retires physical memory pages through the kernel's
// memory-failure interface: soft offline (migrate the contents, then poison
// the old frame) and hard offline (poison at once, killing users of the page).
//
// The Offliner implements fault.Actuator: it reads /proc/kpageflags before
// writing (a soft offline of an already-poisoned page also returns success,
// so only a read first tells us who did it), writes the physical byte
// address, retries where retrying can help, and verifies through the
// HWPOISON bit and HardwareCorrupted in meminfo. It never decides budgets and
// never closes a case. Every file is reached through kpath.Paths and kpath.FS.
package pageoffline
