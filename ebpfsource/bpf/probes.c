// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * Probes on the RAS tracepoints. Each probe copies its tracepoint's fields,
 * read through CO-RE so one object loads on every kernel whose BTF keeps the
 * member names, into a flat wire record and sends it to userspace through
 * one ring buffer, waking the reader at once.
 *
 * Storms are counted here instead of sent: each record has an aggregation
 * key (a page, or a CPU and bank). Past key_limit records of one key within
 * key_window_ns, a record only adds to its key's counters and overwrites the
 * key's last-record snapshot, and while the key keeps that rate from one
 * window to the next, all its records do; userspace reads the counters and
 * reports exact totals. A record that finds the ring buffer full is counted the same
 * way, so every record is either sent or counted. Only a record that finds
 * both the ring buffer and its aggregation map full is lost, and that is
 * counted too.
 *
 * The wire structs are flat (no nested structs) because userspace builds a
 * tracefs-style format for each from this object's BTF: member names are the
 * tracepoint's field names, so the decoders that read tracefs records read
 * these alike. Members named sp_* are ours.
 */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* bpf_probe_read_kernel* are GPL-only helpers. */
char LICENSE[] SEC("license") = "GPL";

/* Which probe a wire record or a counter belongs to. */
enum sp_kind {
	SP_NOTICE = 0, /* a key started aggregating: userspace should sweep */
	SP_MCE_RECORD = 1,
	SP_MC_EVENT = 2,
	SP_MEMORY_FAILURE = 3,
	SP_EXTLOG_MEM = 4,
	SP_AER = 5,
	SP_KINDS = 6,
};

/* Set by the loader before load; the defaults keep every record that can
 * decide an action (the policy's thresholds are far below 16 a second on
 * one page or bank) on the ring buffer. */
volatile const __u32 key_limit = 16;
volatile const __u64 key_window_ns = 1000000000ULL;

#define SP_MSG_LEN 80
#define SP_LABEL_LEN 288 /* EDAC_MAX_LABELS * (label + " or ") */
#define SP_DETAIL_LEN 384
#define SP_NAME_LEN 64
#define SP_PAGE_NONE 0xffffffffffffffffULL

struct sp_notice {
	__u32 sp_kind;
	__u32 sp_cpu;
};

struct sp_mce_record {
	__u32 sp_kind;
	__u32 sp_cpu; /* the CPU the probe ran on; the error's CPU is cpu */
	__u64 mcgcap;
	__u64 mcgstatus;
	__u64 status;
	__u64 addr;
	__u64 misc;
	__u64 synd;
	__u64 ipid;
	__u64 ip;
	__u64 tsc;
	__u64 ppin;
	__u64 walltime;
	__u32 cpu;
	__u32 cpuid;
	__u32 apicid;
	__u32 socketid;
	__u8 cs;
	__u8 bank;
	__u8 cpuvendor;
	__u8 sp_pad;
	__u32 microcode;
};

struct sp_mc_event {
	__u32 sp_kind;
	__u32 sp_cpu;
	__u32 error_type;
	__u16 error_count;
	__u8 mc_index;
	__s8 top_layer;
	__s8 middle_layer;
	__s8 lower_layer;
	__u8 grain_bits;
	__u8 sp_pad;
	__u32 sp_pad2;
	__u64 address;
	__u64 syndrome;
	char msg[SP_MSG_LEN];
	char label[SP_LABEL_LEN];
	char driver_detail[SP_DETAIL_LEN];
};

struct sp_memory_failure_event {
	__u32 sp_kind;
	__u32 sp_cpu;
	__u64 pfn;
	__s32 type;
	__s32 result;
};

struct sp_extlog_mem_event {
	__u32 sp_kind;
	__u32 sp_cpu;
	__u64 pa;
	__u32 err_seq;
	__u8 etype;
	__u8 sev;
	__u8 pa_mask_lsb;
	__u8 sp_pad;
	__u8 fru_id[16];
	char fru_text[SP_NAME_LEN];
};

struct sp_aer_event {
	__u32 sp_kind;
	__u32 sp_cpu;
	__u32 status;
	__u8 severity;
	__u8 tlp_header_valid;
	__u16 sp_pad;
	__u32 tlp_header[4];
	char dev_name[SP_NAME_LEN];
};

/* What one record is counted under. Unused parts are all ones. */
struct sp_key {
	__u64 page;
	__u64 sig;
	__u32 cpu;
	__u16 bank;
	__u16 kind;
};

/* Every aggregation value starts with this head; the key's last record
 * follows it. records counts records, errors what they stand for (an
 * mc_event's error_count). */
struct sp_agg_head {
	__u64 window_start;
	__u64 records;
	__u64 errors;
	__u32 in_window;
	__u32 storming; /* the window before this one went past key_limit */
};

struct sp_mce_agg {
	struct sp_agg_head head;
	struct sp_mce_record last;
};
struct sp_mc_agg {
	struct sp_agg_head head;
	struct sp_mc_event last;
};
struct sp_mf_agg {
	struct sp_agg_head head;
	struct sp_memory_failure_event last;
};
struct sp_extlog_agg {
	struct sp_agg_head head;
	struct sp_extlog_mem_event last;
};
struct sp_aer_agg {
	struct sp_agg_head head;
	struct sp_aer_event last;
};

/* Per kind, summed over CPUs by userspace. seen = sent + aggregated + lost. */
struct sp_stats {
	__u64 seen;
	__u64 sent;
	__u64 aggregated;
	__u64 ringbuf_full;
	__u64 lost;
};

/* Records are built here: an mc_event is larger than the BPF stack. */
union sp_scratch {
	struct sp_mce_record mce;
	struct sp_mc_event mc;
	struct sp_memory_failure_event mf;
	struct sp_extlog_mem_event extlog;
	struct sp_aer_event aer;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SP_KINDS);
	__type(key, __u32);
	__type(value, struct sp_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union sp_scratch);
} scratch SEC(".maps");

/* Written by userspace, read by every probe: while non-zero, records are
 * held out of aggregation. Each is sent on its own, as long as the ring
 * buffer takes it, so that a record another reader of the same tracepoints
 * also delivers (tracefs, during a hand-over between the two) arrives here
 * as itself and can be matched one for one; an aggregate stands for records
 * nobody can tell apart. A record that finds the ring buffer full is still
 * counted under its key (never silently lost) and shows as ringbuf_full. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} hold SEC(".maps");

/* Never written: the zeroed value a new aggregation entry starts from. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sp_mc_agg);
} zero SEC(".maps");

#define SP_AGG_MAP(name, value_type, entries)        \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_HASH);      \
		__uint(max_entries, entries);         \
		__type(key, struct sp_key);           \
		__type(value, value_type);            \
	} name SEC(".maps")

SP_AGG_MAP(mce_agg, struct sp_mce_agg, 2048);
SP_AGG_MAP(mc_agg, struct sp_mc_agg, 512);
SP_AGG_MAP(mf_agg, struct sp_mf_agg, 256);
SP_AGG_MAP(extlog_agg, struct sp_extlog_agg, 256);
SP_AGG_MAP(aer_agg, struct sp_aer_agg, 256);

static __always_inline void sp_notice(__u32 cpu)
{
	struct sp_notice n = { .sp_kind = SP_NOTICE, .sp_cpu = cpu };

	/* A lost notice only delays the totals to the next backstop sweep. */
	bpf_ringbuf_output(&events, &n, sizeof(n), BPF_RB_FORCE_WAKEUP);
}

/* sp_deliver sends rec, or counts it under key in agg. */
static __always_inline void sp_deliver(void *agg, struct sp_key *key, void *rec, __u32 size,
				       __u32 kind, __u32 cpu, __u64 errors)
{
	struct sp_agg_head *v;
	struct sp_stats *st;
	__u32 zkey = 0;
	__u32 *held;
	void *z;
	__u32 n = 0;
	__u64 now;

	st = bpf_map_lookup_elem(&stats, &kind);
	z = bpf_map_lookup_elem(&zero, &zkey);
	if (!st || !z)
		return;
	st->seen++;
	now = bpf_ktime_get_ns();

	/* Held: no pacing and no window bookkeeping, so a key starts its first
	 * window fresh once aggregation is released. */
	held = bpf_map_lookup_elem(&hold, &zkey);
	if (held && *held) {
		if (bpf_ringbuf_output(&events, rec, size, BPF_RB_FORCE_WAKEUP) == 0) {
			st->sent++;
			return;
		}
		st->ringbuf_full++;
		v = bpf_map_lookup_elem(agg, key);
		if (!v) {
			bpf_map_update_elem(agg, key, z, BPF_NOEXIST);
			v = bpf_map_lookup_elem(agg, key);
		}
		if (!v) {
			st->lost++;
			return;
		}
		goto count;
	}

	v = bpf_map_lookup_elem(agg, key);
	if (!v) {
		bpf_map_update_elem(agg, key, z, BPF_NOEXIST);
		v = bpf_map_lookup_elem(agg, key);
	}
	if (!v) {
		/* Aggregation map full: the record can only be sent. */
		if (bpf_ringbuf_output(&events, rec, size, BPF_RB_FORCE_WAKEUP) == 0) {
			st->sent++;
			return;
		}
		st->ringbuf_full++;
		st->lost++;
		return;
	}

	/* The window, in_window and storming race between CPUs: they only pace
	 * sending. The counters below are exact.
	 *
	 * A key whose last window went past key_limit, and whose records go on
	 * within a window of its end, is storming: all its records are counted
	 * from the new window's first, with no record and no notice to wake
	 * the reader. What they could decide at once, the last window already
	 * did: it sent key_limit records and its first counted one woke a
	 * sweep, so every rule up to key_limit + 1 records within key_window
	 * has seen this key cross it; a rule that needs more records is
	 * decided by a sweep (every Sweep while the counts grow), as it is
	 * within a window. A storm pays one sweep per Sweep, not key_limit + 1
	 * wake-ups per window. */
	if (now - v->window_start > key_window_ns) {
		v->storming = v->in_window > key_limit && now - v->window_start <= 2 * key_window_ns;
		v->window_start = now;
		v->in_window = 0;
	}
	n = v->in_window;
	v->in_window = n + 1;
	if (n < key_limit && !v->storming) {
		if (bpf_ringbuf_output(&events, rec, size, BPF_RB_FORCE_WAKEUP) == 0) {
			st->sent++;
			return;
		}
		st->ringbuf_full++;
	}

count:
	/* The snapshot is written before the counters grow, so userspace never
	 * sees a count without a record to describe it. */
	bpf_probe_read_kernel((void *)v + sizeof(*v), size, rec);
	__sync_fetch_and_add(&v->records, 1);
	__sync_fetch_and_add(&v->errors, errors);
	st->aggregated++;
	/* Held, the ring buffer is full: a notice would not fit either, and
	 * the reader is behind, not asleep. */
	if (n == key_limit && !v->storming && !(held && *held))
		sp_notice(cpu);
}

static __always_inline union sp_scratch *sp_scratch(void)
{
	__u32 zkey = 0;

	return bpf_map_lookup_elem(&scratch, &zkey);
}

/* sp_loc_str copies a __data_loc string: the u32 holds length << 16 | the
 * string's offset from the start of the record. */
static __always_inline void sp_loc_str(char *dst, __u32 size, void *ctx, __u32 loc)
{
	if (bpf_probe_read_kernel_str(dst, size, ctx + (loc & 0xffff)) < 0)
		dst[0] = 0;
}

/* MCA status bits that say what an error is (valid, uncorrected, enabled,
 * misc/addr valid, context corrupt, signalled, action required, MCACOD,
 * MSCOD), without the ones that change from one error to the next (the
 * corrected error count, the overflow bit). */
#define SP_STATUS_SIG 0xbfe00000ffffffffULL
#define SP_STATUS_ADDRV (1ULL << 58)

SEC("tracepoint/mce/mce_record")
int mce_record(struct trace_event_raw_mce_record *ctx)
{
	union sp_scratch *s = sp_scratch();
	struct sp_mce_record *r;
	struct sp_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();

	if (!s)
		return 0;
	r = &s->mce;
	r->sp_kind = SP_MCE_RECORD;
	r->sp_cpu = cpu;
	r->mcgcap = BPF_CORE_READ(ctx, mcgcap);
	r->mcgstatus = BPF_CORE_READ(ctx, mcgstatus);
	r->status = BPF_CORE_READ(ctx, status);
	r->addr = BPF_CORE_READ(ctx, addr);
	r->misc = BPF_CORE_READ(ctx, misc);
	r->synd = BPF_CORE_READ(ctx, synd);
	r->ipid = BPF_CORE_READ(ctx, ipid);
	r->ip = BPF_CORE_READ(ctx, ip);
	r->tsc = BPF_CORE_READ(ctx, tsc);
	r->walltime = BPF_CORE_READ(ctx, walltime);
	r->cpu = BPF_CORE_READ(ctx, cpu);
	r->cpuid = BPF_CORE_READ(ctx, cpuid);
	r->apicid = BPF_CORE_READ(ctx, apicid);
	r->socketid = BPF_CORE_READ(ctx, socketid);
	r->cs = BPF_CORE_READ(ctx, cs);
	r->bank = BPF_CORE_READ(ctx, bank);
	r->cpuvendor = BPF_CORE_READ(ctx, cpuvendor);
	r->sp_pad = 0;
	/* ppin and microcode exist from 6.12 on; the tracefs decoder reads them
	 * as zero where the format lacks them, and so do we. */
	r->ppin = 0;
	if (bpf_core_field_exists(ctx->ppin))
		r->ppin = BPF_CORE_READ(ctx, ppin);
	r->microcode = 0;
	if (bpf_core_field_exists(ctx->microcode))
		r->microcode = BPF_CORE_READ(ctx, microcode);

	key.kind = SP_MCE_RECORD;
	key.cpu = r->cpu;
	key.bank = r->bank;
	key.sig = r->status & SP_STATUS_SIG;
	key.page = (r->status & SP_STATUS_ADDRV) ? r->addr >> 12 : SP_PAGE_NONE;
	sp_deliver(&mce_agg, &key, r, sizeof(*r), SP_MCE_RECORD, cpu, 1);
	return 0;
}

SEC("tracepoint/ras/mc_event")
int mc_event(struct trace_event_raw_mc_event *ctx)
{
	union sp_scratch *s = sp_scratch();
	struct sp_mc_event *r;
	struct sp_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();

	if (!s)
		return 0;
	r = &s->mc;
	r->sp_kind = SP_MC_EVENT;
	r->sp_cpu = cpu;
	r->error_type = BPF_CORE_READ(ctx, error_type);
	r->error_count = BPF_CORE_READ(ctx, error_count);
	r->mc_index = BPF_CORE_READ(ctx, mc_index);
	r->top_layer = BPF_CORE_READ(ctx, top_layer);
	r->middle_layer = BPF_CORE_READ(ctx, middle_layer);
	r->lower_layer = BPF_CORE_READ(ctx, lower_layer);
	r->grain_bits = BPF_CORE_READ(ctx, grain_bits);
	r->sp_pad = 0;
	r->sp_pad2 = 0;
	r->address = BPF_CORE_READ(ctx, address);
	r->syndrome = BPF_CORE_READ(ctx, syndrome);
	sp_loc_str(r->msg, sizeof(r->msg), ctx, BPF_CORE_READ(ctx, __data_loc_msg));
	sp_loc_str(r->label, sizeof(r->label), ctx, BPF_CORE_READ(ctx, __data_loc_label));
	sp_loc_str(r->driver_detail, sizeof(r->driver_detail), ctx,
		   BPF_CORE_READ(ctx, __data_loc_driver_detail));

	key.kind = SP_MC_EVENT;
	key.cpu = 0xffffffff;
	key.bank = 0xffff;
	key.page = r->address >> 12;
	key.sig = (__u64)r->error_type | (__u64)r->mc_index << 8 | (__u64)(__u8)r->top_layer << 16 |
		  (__u64)(__u8)r->middle_layer << 24 | (__u64)(__u8)r->lower_layer << 32 |
		  (__u64)r->grain_bits << 40;
	sp_deliver(&mc_agg, &key, r, sizeof(*r), SP_MC_EVENT, cpu,
		   r->error_count ? r->error_count : 1);
	return 0;
}

SEC("tracepoint/ras/memory_failure_event")
int memory_failure_event(struct trace_event_raw_memory_failure_event *ctx)
{
	union sp_scratch *s = sp_scratch();
	struct sp_memory_failure_event *r;
	struct sp_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();

	if (!s)
		return 0;
	r = &s->mf;
	r->sp_kind = SP_MEMORY_FAILURE;
	r->sp_cpu = cpu;
	r->pfn = BPF_CORE_READ(ctx, pfn);
	r->type = BPF_CORE_READ(ctx, type);
	r->result = BPF_CORE_READ(ctx, result);

	key.kind = SP_MEMORY_FAILURE;
	key.cpu = 0xffffffff;
	key.bank = 0xffff;
	key.page = r->pfn;
	key.sig = (__u64)(__u32)r->type << 32 | (__u32)r->result;
	sp_deliver(&mf_agg, &key, r, sizeof(*r), SP_MEMORY_FAILURE, cpu, 1);
	return 0;
}

SEC("tracepoint/ras/extlog_mem_event")
int extlog_mem_event(struct trace_event_raw_extlog_mem_event *ctx)
{
	union sp_scratch *s = sp_scratch();
	struct sp_extlog_mem_event *r;
	struct sp_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();

	if (!s)
		return 0;
	r = &s->extlog;
	r->sp_kind = SP_EXTLOG_MEM;
	r->sp_cpu = cpu;
	r->pa = BPF_CORE_READ(ctx, pa);
	r->err_seq = BPF_CORE_READ(ctx, err_seq);
	r->etype = BPF_CORE_READ(ctx, etype);
	r->sev = BPF_CORE_READ(ctx, sev);
	r->pa_mask_lsb = BPF_CORE_READ(ctx, pa_mask_lsb);
	r->sp_pad = 0;
	if (bpf_core_read(r->fru_id, sizeof(r->fru_id), &ctx->fru_id) < 0)
		__builtin_memset(r->fru_id, 0, sizeof(r->fru_id));
	sp_loc_str(r->fru_text, sizeof(r->fru_text), ctx, BPF_CORE_READ(ctx, __data_loc_fru_text));

	key.kind = SP_EXTLOG_MEM;
	key.cpu = 0xffffffff;
	key.bank = 0xffff;
	key.page = r->pa >> 12;
	key.sig = (__u64)r->sev << 8 | r->etype;
	sp_deliver(&extlog_agg, &key, r, sizeof(*r), SP_EXTLOG_MEM, cpu, 1);
	return 0;
}

SEC("tracepoint/ras/aer_event")
int aer_event(struct trace_event_raw_aer_event *ctx)
{
	union sp_scratch *s = sp_scratch();
	struct sp_aer_event *r;
	struct sp_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 h = 0xcbf29ce484222325ULL; /* FNV-1a over the device name */
	int i;

	if (!s)
		return 0;
	r = &s->aer;
	r->sp_kind = SP_AER;
	r->sp_cpu = cpu;
	r->status = BPF_CORE_READ(ctx, status);
	r->severity = BPF_CORE_READ(ctx, severity);
	r->tlp_header_valid = BPF_CORE_READ(ctx, tlp_header_valid);
	r->sp_pad = 0;
	if (bpf_core_read(r->tlp_header, sizeof(r->tlp_header), &ctx->tlp_header) < 0)
		__builtin_memset(r->tlp_header, 0, sizeof(r->tlp_header));
	sp_loc_str(r->dev_name, sizeof(r->dev_name), ctx, BPF_CORE_READ(ctx, __data_loc_dev_name));

	/* One device's corrected-error storm is one key; the name is the only
	 * thing that tells devices apart. */
	for (i = 0; i < SP_NAME_LEN; i++) {
		char c = r->dev_name[i];

		if (!c)
			break;
		h = (h ^ (__u8)c) * 0x100000001b3ULL;
	}
	key.kind = SP_AER;
	key.cpu = 0xffffffff;
	key.bank = 0xffff;
	key.page = h;
	key.sig = (__u64)r->status << 8 | r->severity;
	sp_deliver(&aer_agg, &key, r, sizeof(*r), SP_AER, cpu, 1);
	return 0;
}
