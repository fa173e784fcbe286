// Package cpuoffline takes a CPU out of scheduling by writing 0 to its sysfs
// online file, and reads the CPU topology that the daemon's budgets need
// (present, online, isolated CPUs, SMT siblings, CPUs without an online file).
//
// The Offliner implements fault.Actuator: it checks, acts, verifies and
// retries, but never decides budgets and never closes a case. Every file is
// reached through kpath.Paths and kpath.FS so tests can inject errno values.
package cpuoffline
