package ebpfsource

// The compiled object and its Go wrapper (probes_bpfel.go, probes_bpfel.o)
// are committed so that building and unit testing need no clang; `make
// generate` runs this and `make generate-check` proves the committed files
// are what it produces.
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types -type sp_stats -type sp_key -type sp_agg_head -type sp_mce_record -type sp_mc_event -type sp_memory_failure_event -type sp_extlog_mem_event -type sp_aer_event probes bpf/probes.c -- -I./bpf -Wall -Werror
