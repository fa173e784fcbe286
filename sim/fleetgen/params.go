// Package fleetgen generates synthetic fleet histories of hardware errors
// for `selfprotect replay`: DRAM faults arriving per device at field-study
// rates, each fault mode with its own footprint (one bit, one row, one
// bank, ...), heavy-tailed error counts, bursts, and uncorrected errors
// that follow some faults after a lag. It writes the replay package's
// JSON-lines trace format with its own encoder (like the rest of sim/, it
// shares no code with the reader it feeds, so replay's tests cross-check
// both).
//
// Every parameter below names its source. Numbers marked GUESS are ours:
// no cited study gives them in a usable form, they are chosen to land the
// output near the studies' aggregate figures, and they are the first
// thing to revisit with real fleet data. Figures marked "as recalled" are
// quoted from memory of the paper and should be checked against it before
// being cited elsewhere.
//
// Sources:
//   - [S09] Schroeder, Pinheiro, Weber, "DRAM Errors in the Wild: A
//     Large-Scale Field Study", SIGMETRICS 2009 (Google fleet).
//   - [SL12] Sridharan, Liberty, "A Study of DRAM Failures in the Field",
//     SC 2012 (Jaguar, DDR2).
//   - [S13] Sridharan et al., "Feng Shui of Supercomputer Memory", SC 2013;
//     [S15] Sridharan et al., "Memory Errors in Modern Systems", ASPLOS 2015.
//   - [M15] Meza, Wu, Kumar, Mutlu, "Revisiting Memory Errors in
//     Large-Scale Production Data Centers", DSN 2015 (Facebook fleet).
//   - [B23] Beigi et al., "A Systematic Study of DDR4 DRAM Faults in the
//     Field", HPCA 2023.
package fleetgen

import "time"

// Mode is one DRAM fault mode: where its errors land and how often it
// arrives.
type Mode struct {
	Name string
	// TransientFIT and PermanentFIT are faults per 10^9 device-hours per
	// DRAM device. Source: [SL12] Table 2-style per-mode rates for DDR2
	// (as recalled; [S13]/[S15] report the same ordering for DDR3: single
	// bit most common, then bank, row, column; permanent faults about as
	// frequent as transient ones or more).
	TransientFIT, PermanentFIT float64
	// UEProbability is the chance that a permanent fault of this mode
	// produces an uncorrected error within the run. GUESS: ordered by
	// [S15] and [B23] (with chipkill-class ECC single-bit faults almost
	// never become uncorrectable; faults spanning many bits — bank,
	// multi-bank, multi-rank — cause most UEs) and scaled so that, with
	// the sudden UEs below, about 2% of hosts see a UE per year ([S09]:
	// 1.3% of machines per year on average, varying widely by platform).
	UEProbability float64
	// UELagMean is the mean time from the fault's onset to its UE
	// (exponential). GUESS: [S09] finds a CE raises the chance of a UE in
	// the same month 27-400x, so most lags are days to weeks.
	UELagMean time.Duration
	// footprint says which address bits stay fixed for the fault.
	footprint footprint
}

type footprint uint8

const (
	fpBit       footprint = iota // one address
	fpWord                       // one address (several bits of one word)
	fpColumn                     // one bank and column, any row
	fpRow                        // one bank and row, any column
	fpBank                       // one bank, any row and column
	fpMultiBank                  // a few banks of one rank
	fpMultiRank                  // several ranks
)

// DefaultModes is the mode table. FIT values: [SL12] as recalled
// (transient / permanent per device): single-bit 14.2/18.6, single-word
// 1.4/0.3, single-column 1.4/5.6, single-row 0.2/8.2, single-bank
// 0.8/10.0, multi-bank 0.3/1.4, multi-rank 0.9/2.8.
func DefaultModes() []Mode {
	const d = 24 * time.Hour
	return []Mode{
		{Name: "single-bit", TransientFIT: 14.2, PermanentFIT: 18.6, UEProbability: 0.002, UELagMean: 60 * d, footprint: fpBit},
		{Name: "single-word", TransientFIT: 1.4, PermanentFIT: 0.3, UEProbability: 0.05, UELagMean: 30 * d, footprint: fpWord},
		{Name: "single-column", TransientFIT: 1.4, PermanentFIT: 5.6, UEProbability: 0.05, UELagMean: 30 * d, footprint: fpColumn},
		{Name: "single-row", TransientFIT: 0.2, PermanentFIT: 8.2, UEProbability: 0.08, UELagMean: 20 * d, footprint: fpRow},
		{Name: "single-bank", TransientFIT: 0.8, PermanentFIT: 10.0, UEProbability: 0.10, UELagMean: 20 * d, footprint: fpBank},
		{Name: "multi-bank", TransientFIT: 0.3, PermanentFIT: 1.4, UEProbability: 0.15, UELagMean: 15 * d, footprint: fpMultiBank},
		{Name: "multi-rank", TransientFIT: 0.9, PermanentFIT: 2.8, UEProbability: 0.20, UELagMean: 10 * d, footprint: fpMultiRank},
	}
}

// Params describe the fleet and its error processes.
type Params struct {
	Seed     uint64
	Hosts    int
	Start    time.Time
	Duration time.Duration

	// Host shape. Defaults: 2 sockets × 8 DIMMs of 16 GiB, 2 ranks of 18
	// x4 devices (16 data + 2 ECC) — a common 256 GiB two-socket server;
	// not from a study.
	DIMMsPerHost   int
	DIMMGiB        int
	RanksPerDIMM   int
	DevicesPerRank int
	CPUs           int
	ThreadsPerCore int

	// FITScale multiplies every FIT. At 1, [SL12]'s per-device rates give
	// a 36-device DIMM a fault with probability ~2% a year, and a 16-DIMM
	// host ~28% (our arithmetic), near [S09]'s "about a third of machines
	// a year"; [S09]'s 8% of DIMMs a year came from older hardware with
	// fewer DIMMs per machine. Raise it to model a worse fleet.
	FITScale float64
	Modes    []Mode

	// ErrorsMedian and ErrorsSigma shape the lognormal number of corrected
	// errors a permanent fault logs per year of activity. GUESS calibrated
	// on [S09] (for DIMMs with errors: median tens, mean thousands of CEs
	// a year; the top 20% of such DIMMs log over 90% of the errors) and
	// [M15] (a small share of servers logs almost all errors).
	ErrorsMedian float64
	ErrorsSigma  float64
	// MaxErrorsPerFault caps one fault so one trace line per error stays
	// affordable. GUESS (a bound, not a statistic).
	MaxErrorsPerFault int
	// BurstMean is the mean number of errors per burst; errors in a burst
	// are BurstGap apart on average. GUESS: [S09] and [M15] report errors
	// strongly clustered in time.
	BurstMean float64
	BurstGap  time.Duration
	// TransientErrorsMean is the mean error count of a transient fault,
	// logged within TransientSpan. GUESS.
	TransientErrorsMean float64
	TransientSpan       time.Duration

	// SuddenUEPerDIMMYear is the rate of UEs with no corrected precursor.
	// GUESS: [B23] and [S09] both find a share of UEs with no earlier CE
	// on the same DIMM; this rate makes about a quarter to a third of UEs sudden.
	SuddenUEPerDIMMYear float64
	// CacheFaultsPerHostYear is the rate of a core's private cache
	// starting to log corrected errors. GUESS: no cited study of DRAM
	// gives it; kept small so CPU budgets are exercised, not dominant.
	CacheFaultsPerHostYear float64

	// RowDecode writes each memory error's DRAM row (as EDAC drivers that
	// decode it do), so the row rule can act.
	RowDecode bool
}

// Defaults returns the reference parameters (seed 1, 1000 hosts, 1 year).
func Defaults() Params {
	return Params{
		Seed: 1, Hosts: 1000,
		Start:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Duration: 365 * 24 * time.Hour,

		DIMMsPerHost: 16, DIMMGiB: 16, RanksPerDIMM: 2, DevicesPerRank: 18,
		CPUs: 64, ThreadsPerCore: 2,

		FITScale: 1,
		Modes:    DefaultModes(),

		ErrorsMedian: 25, ErrorsSigma: 2.8, MaxErrorsPerFault: 100_000,
		BurstMean: 4, BurstGap: 30 * time.Second,
		TransientErrorsMean: 2, TransientSpan: 24 * time.Hour,

		SuddenUEPerDIMMYear:    0.0004,
		CacheFaultsPerHostYear: 0.002,
		RowDecode:              true,
	}
}
