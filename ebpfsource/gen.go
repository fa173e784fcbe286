package ebpfsource

// The compiled object and its Go wrapper (probes_bpfel.go, probes_bpfel.o)
// are committed so that building and unit testing need no clang; `make
// generate` runs this and `make generate-check` proves the committed files
// are what it produces.
//go:generate go tool bpf2go -tags linux -target bpfel -no-global-types -type sp_stats -type sp_key -type sp_agg_head probes bpf/probes.c -- -I./bpf -Wall -Werror
